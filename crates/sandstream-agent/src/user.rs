//! Who a command runs as: a request's `user` (a name or a numeric uid) resolved in the
//! sandbox's own /etc/passwd and /etc/group, as `login` or `sudo -u` would: its uid, its
//! primary gid, the supplementary groups that list it as a member, and its home.
//!
//! Security: both files belong to the sandbox, and code running as root inside may have
//! written anything there. They are parsed as untrusted bytes: a malformed line is
//! skipped, never a panic; a file is read only if it is a regular file, opened without
//! blocking (a FIFO planted at /etc/passwd must not hang the agent's request) and at most
//! [`MAX_DB_BYTES`] of it (`/dev/zero` linked there must not exhaust the agent's memory);
//! and no id is ever `u32::MAX`, which the kernel's credential calls read as "no change"
//! (`setresuid(-1, …)`) or reject, so it could leave a command root.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{AgentError, Result};

/// Longest `user` a request may name (useradd allows 32 bytes): the name comes back in
/// error messages, which must stay small enough for a gRPC status header.
pub(crate) const MAX_NAME_BYTES: usize = 256;
/// Most bytes of /etc/passwd or /etc/group read (a large directory's are a few MiB).
const MAX_DB_BYTES: u64 = 16 << 20;
/// The kernel's limit on supplementary groups (`NGROUPS_MAX`); more are dropped.
const MAX_GROUPS: usize = 65_536;
/// What a user with no passwd entry, or an empty home field, gets as its home.
const NO_HOME: &str = "/";

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups: the primary gid first, then every group that lists the user
    /// as a member, each once (what `initgroups` sets).
    pub(crate) groups: Vec<u32>,
    /// Its passwd name; `None` for a numeric uid without an entry.
    pub(crate) name: Option<OsString>,
    /// Its home directory (`/` when it has none).
    pub(crate) home: PathBuf,
}

impl Identity {
    /// How List reports it: its name, or its uid when it has none.
    pub(crate) fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.to_string_lossy().into_owned(),
            None => self.uid.to_string(),
        }
    }

    /// The variables that follow the user: `HOME`, `USER`, `LOGNAME` (`None`: removed,
    /// for a uid without a name, rather than left saying another user's).
    pub(crate) fn env(&self) -> [(&'static str, Option<OsString>); 3] {
        [
            ("HOME", Some(self.home.clone().into_os_string())),
            ("USER", self.name.clone()),
            ("LOGNAME", self.name.clone()),
        ]
    }

    /// Where its commands start when the request gives no cwd, and what a relative cwd
    /// resolves against: its home when that is a directory, else `/` (as `login` does).
    pub(crate) fn default_cwd(&self) -> PathBuf {
        if self.home.is_absolute() && self.home.is_dir() { self.home.clone() } else { PathBuf::from(NO_HOME) }
    }
}

/// One well-formed line of /etc/passwd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PasswdEntry<'a> {
    name: &'a [u8],
    uid: u32,
    gid: u32,
    home: &'a [u8],
}

/// The well-formed entries of a passwd file, in order. A line is
/// `name:password:uid:gid:gecos:home:shell`; lines that are empty, comments (`#`), NIS
/// markers (`+`, `-`), not seven fields, or with an empty name or an id that is not a
/// plain decimal below `u32::MAX` are skipped.
fn passwd_entries(data: &[u8]) -> impl Iterator<Item = PasswdEntry<'_>> {
    lines(data).filter_map(|line| {
        let fields: Vec<&[u8]> = line.split(|b| *b == b':').collect();
        let [name, _, uid, gid, _, home, _] = fields[..] else { return None };
        (!name.is_empty()).then_some(())?;
        Some(PasswdEntry { name, uid: id(uid)?, gid: id(gid)?, home })
    })
}

/// The gids of the groups in a group file that list `name` as a member. A line is
/// `name:password:gid:member,member,...`; malformed lines are skipped as in
/// [`passwd_entries`].
fn member_of<'a>(data: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = u32> + 'a {
    lines(data).filter_map(move |line| {
        let fields: Vec<&[u8]> = line.split(|b| *b == b':').collect();
        let [group, _, gid, members] = fields[..] else { return None };
        (!group.is_empty()).then_some(())?;
        let gid = id(gid)?;
        members.split(|b| *b == b',').any(|m| m == name).then_some(gid)
    })
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && !matches!(l.first(), Some(b'#' | b'+' | b'-')) && !l.contains(&0))
}

/// A plain decimal id (no sign, space or prefix), never `u32::MAX` (the kernel's -1).
fn id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse::<u32>().ok().filter(|n| *n != u32::MAX)
}

/// Resolves `requested` against the contents of /etc/passwd and /etc/group (`None`:
/// the file is missing): `root` is uid 0 (with its entry's home and groups if it has
/// one, else /root); another name is looked up in passwd; a number that names no user is
/// taken as a uid (its entry's user if there is one, else that uid with the same gid,
/// no supplementary group and `/` as home). Anything else is [`AgentError::UnknownUser`].
pub(crate) fn resolve(requested: &str, passwd: Option<&[u8]>, group: Option<&[u8]>) -> Result<Identity> {
    if requested.len() > MAX_NAME_BYTES {
        return Err(AgentError::InvalidArgument(format!("user name is longer than {MAX_NAME_BYTES} bytes")));
    }
    let entries = || passwd_entries(passwd.unwrap_or_default());
    let wanted = requested.as_bytes();
    let entry = if requested == "root" {
        // "root" is uid 0 whatever the file says; an entry for root with another uid is ignored.
        entries().find(|e| e.name == b"root" && e.uid == 0).or(Some(PasswdEntry {
            name: b"root",
            uid: 0,
            gid: 0,
            home: b"/root",
        }))
    } else {
        entries().find(|e| e.name == wanted)
    };
    let entry = match entry {
        Some(e) => e,
        None => {
            let Some(uid) = id(wanted) else { return Err(AgentError::UnknownUser(requested.to_string())) };
            match entries().find(|e| e.uid == uid) {
                Some(e) => e,
                None => {
                    return Ok(Identity { uid, gid: uid, groups: vec![uid], name: None, home: NO_HOME.into() });
                }
            }
        }
    };
    let mut groups = vec![entry.gid];
    let mut seen = std::collections::HashSet::from([entry.gid]);
    for gid in member_of(group.unwrap_or_default(), entry.name) {
        if groups.len() >= MAX_GROUPS {
            break;
        }
        if seen.insert(gid) {
            groups.push(gid);
        }
    }
    let home = match entry.home {
        [] => PathBuf::from(NO_HOME),
        home => PathBuf::from(OsString::from_vec(home.to_vec())),
    };
    Ok(Identity { uid: entry.uid, gid: entry.gid, groups, name: Some(OsString::from_vec(entry.name.to_vec())), home })
}

/// Resolves `requested` in the sandbox's own /etc/passwd and /etc/group.
pub(crate) fn lookup(requested: &str) -> Result<Identity> {
    let read = |path: &str| {
        read_db(Path::new(path)).map_err(|reason| AgentError::UserLookup { user: requested.to_string(), reason })
    };
    let passwd = read("/etc/passwd")?;
    // /etc/group is read only when a passwd entry was found (its groups are wanted).
    let mut identity = resolve(requested, passwd.as_deref(), None)?;
    if identity.name.is_some() {
        let group = read("/etc/group")?;
        identity = resolve(requested, passwd.as_deref(), group.as_deref())?;
    }
    Ok(identity)
}

/// Names of ids, for showing who owns a file: uid to passwd name and gid to group name
/// (the first entry of each id wins). Empty maps where a file is missing or unusable:
/// owners are then shown as numbers.
#[derive(Debug, Default)]
pub(crate) struct IdNames {
    pub(crate) users: std::collections::HashMap<u32, String>,
    pub(crate) groups: std::collections::HashMap<u32, String>,
}

impl IdNames {
    /// Reads the sandbox's /etc/passwd and /etc/group (bounded as for [`lookup`]).
    pub(crate) fn load() -> IdNames {
        let read = |path: &str| read_db(Path::new(path)).ok().flatten().unwrap_or_default();
        IdNames::parse(&read("/etc/passwd"), &read("/etc/group"))
    }

    fn parse(passwd: &[u8], group: &[u8]) -> IdNames {
        let mut names = IdNames::default();
        for e in passwd_entries(passwd) {
            names.users.entry(e.uid).or_insert_with(|| String::from_utf8_lossy(e.name).into_owned());
        }
        for line in lines(group) {
            let mut fields = line.split(|b| *b == b':');
            let (Some(name), Some(_), Some(gid)) = (fields.next(), fields.next(), fields.next()) else { continue };
            if let (false, Some(gid)) = (name.is_empty(), id(gid)) {
                names.groups.entry(gid).or_insert_with(|| String::from_utf8_lossy(name).into_owned());
            }
        }
        names
    }
}

/// The bytes of a user database file; `None` if it does not exist. An error (a sentence
/// naming the file) if it is not a regular file, is larger than [`MAX_DB_BYTES`] or
/// cannot be read.
fn read_db(path: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let meta = file.metadata().map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut data = Vec::new();
    file.take(MAX_DB_BYTES + 1).read_to_end(&mut data).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if data.len() as u64 > MAX_DB_BYTES {
        return Err(format!("{} is larger than {} MiB", path.display(), MAX_DB_BYTES >> 20));
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        user:x:1000:1000::/home/user:/bin/bash\n\
        dev:x:1234:1500:Dev, Eloper:/srv/dev:/bin/sh\n\
        nohome:x:1300:1300:::/bin/sh\n";
    const GROUP: &[u8] = b"root:x:0:\nuser:x:1000:\ndev:x:1500:\nsudo:x:27:user\n\
        docker:x:2001:other,dev,user\naudio:x:2002:dev\nempty:x:2003:\n";

    fn ok(name: &str, passwd: &[u8], group: &[u8]) -> Identity {
        resolve(name, Some(passwd), Some(group)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn ident(uid: u32, gid: u32, groups: &[u32], name: Option<&str>, home: &str) -> Identity {
        Identity { uid, gid, groups: groups.to_vec(), name: name.map(OsString::from), home: home.into() }
    }

    #[test]
    fn names_resolve_to_their_ids_groups_and_home() {
        assert_eq!(ok("root", PASSWD, GROUP), ident(0, 0, &[0], Some("root"), "/root"));
        assert_eq!(ok("user", PASSWD, GROUP), ident(1000, 1000, &[1000, 27, 2001], Some("user"), "/home/user"));
        assert_eq!(ok("dev", PASSWD, GROUP), ident(1234, 1500, &[1500, 2001, 2002], Some("dev"), "/srv/dev"));
        assert_eq!(ok("nohome", PASSWD, GROUP), ident(1300, 1300, &[1300], Some("nohome"), "/"));
        let dev = ok("dev", PASSWD, GROUP);
        assert_eq!(dev.display_name(), "dev");
        assert_eq!(
            dev.env(),
            [("HOME", Some("/srv/dev".into())), ("USER", Some("dev".into())), ("LOGNAME", Some("dev".into()))]
        );
    }

    #[test]
    fn numbers_are_uids_and_names_win_over_them() {
        assert_eq!(ok("1234", PASSWD, GROUP), ok("dev", PASSWD, GROUP));
        assert_eq!(ok("0", PASSWD, GROUP), ok("root", PASSWD, GROUP));
        let stranger = ok("4242", PASSWD, GROUP);
        assert_eq!(stranger, ident(4242, 4242, &[4242], None, "/"));
        assert_eq!(stranger.display_name(), "4242");
        assert_eq!(stranger.env(), [("HOME", Some("/".into())), ("USER", None), ("LOGNAME", None)]);
        assert_eq!(stranger.default_cwd(), PathBuf::from("/"));
        // A user literally named "77" is that user, not uid 77.
        let named = b"77:x:5000:5000::/home/77:/bin/sh\n";
        assert_eq!(ok("77", named, b"").uid, 5000);
    }

    #[test]
    fn unknown_names_and_bad_numbers_are_refused_by_name() {
        for name in
            ["nosuch", "-1", "+5", " 1000", "1000 ", "0x10", "4294967295", "99999999999", "us:er", "user,dev", "é"]
        {
            let Err(e) = resolve(name, Some(PASSWD), Some(GROUP)) else { panic!("{name:?} resolved") };
            assert!(matches!(e, AgentError::UnknownUser(_)), "{name:?}: {e:?}");
            assert_eq!(e.to_string(), format!("unknown user {}", name.escape_debug()));
        }
        let e = resolve("a\nb", Some(PASSWD), Some(GROUP)).expect_err("newline");
        assert_eq!(e.to_string(), "unknown user a\\nb");
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = resolve(&long, Some(PASSWD), None).expect_err("long");
        assert_eq!(e.to_string(), "user name is longer than 256 bytes");
        assert!(matches!(resolve(&"x".repeat(MAX_NAME_BYTES), Some(PASSWD), None), Err(AgentError::UnknownUser(_))));
    }

    #[test]
    fn root_is_uid_zero_without_files_and_whatever_they_say() {
        assert_eq!(resolve("root", None, None).expect("root"), ident(0, 0, &[0], Some("root"), "/root"));
        // An entry named root with another uid does not make "root" that uid.
        let odd = b"root:x:77:77::/home/fake:/bin/sh\n";
        assert_eq!(resolve("root", Some(odd), None).expect("root"), ident(0, 0, &[0], Some("root"), "/root"));
        assert!(matches!(resolve("user", None, None), Err(AgentError::UnknownUser(_))));
        assert_eq!(resolve("1000", None, None).expect("uid").uid, 1000);
    }

    #[test]
    fn malformed_lines_are_skipped_and_never_panic() {
        let passwd = b"\n#user:x:1:1::/c:/bin/sh\n+user:x:2:2::/n:/bin/sh\n-user::::::\n\
            user:x:1000\nuser:x:1000:1000::/home/user\nuser:x:1000:1000::/home/user:/bin/sh:extra\n\
            user:x:-1:1000::/x:/bin/sh\nuser:x:1000:4294967295::/x:/bin/sh\nuser:x:4294967295:1::/x:/bin/sh\n\
            user:x: 1000:1000::/x:/bin/sh\nuser:x:1000:1000::/x\0y:/bin/sh\n:x:7:7::/x:/bin/sh\n\
            user:x:1001:1001::/home/ok:/bin/bash\r\n";
        let group = b"docker:x:2001\n:x:9:user\nwheel:x:abc:user\nbad:x:4294967295:user\n\
            dup:x:1001:user\nok:x:3000:user\nok2:x:3000:user\n";
        assert_eq!(ok("user", passwd, group), ident(1001, 1001, &[1001, 3000], Some("user"), "/home/ok"));
        // Truncated and garbage inputs of every prefix length: no panic.
        let all = [PASSWD, GROUP, passwd.as_slice(), group.as_slice()].concat();
        for end in 0..all.len() {
            let _ = resolve("user", Some(&all[..end]), Some(&all[end..]));
            let _ = resolve("1000", Some(&all[end..]), Some(&all[..end]));
        }
        let garbage: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let _ = resolve("root", Some(&garbage), Some(&garbage));
        assert!(resolve("x", Some(&garbage), Some(&garbage)).is_err());
    }

    #[test]
    fn long_files_and_odd_names_resolve() {
        let mut passwd = Vec::new();
        let mut group = Vec::new();
        for i in 0..100_000u32 {
            passwd.extend_from_slice(format!("u{i}:x:{}:{}::/home/u{i}:/bin/sh\n", 10_000 + i, 10_000 + i).as_bytes());
        }
        // Names with characters some tools allow: dots, dashes, a trailing $, UTF-8.
        passwd.extend_from_slice("a.b-c_d$:x:500:500::/home/a.b:/bin/sh\nüser:x:501:501::/home/ü:/bin/sh\n".as_bytes());
        for i in 0..70_000u32 {
            group.extend_from_slice(format!("g{i}:x:{}:a.b-c_d$,other\n", 200_000 + i).as_bytes());
        }
        assert_eq!(ok("u99999", &passwd, &group), ident(109_999, 109_999, &[109_999], Some("u99999"), "/home/u99999"));
        let odd = ok("a.b-c_d$", &passwd, &group);
        assert_eq!((odd.uid, odd.groups.len(), odd.groups[1]), (500, MAX_GROUPS, 200_000));
        assert_eq!(ok("üser", &passwd, &group).home, PathBuf::from("/home/ü"));
        // A name that is not UTF-8 in the file is found by uid, and reported lossily.
        let latin1 = b"j\xf6rg:x:600:600::/home/j:/bin/sh\n";
        let j = ok("600", latin1, b"");
        assert_eq!(
            (j.name.as_ref().map(|n| n.as_encoded_bytes().to_vec()), j.display_name()),
            (Some(b"j\xf6rg".to_vec()), "j\u{fffd}rg".into())
        );
    }

    #[test]
    fn ids_name_their_first_entry() {
        let names = IdNames::parse(PASSWD, b"root:x:0:\nuser:x:1000:\nalias:x:1000:\n:x:5:\nbad:x:x:\n");
        assert_eq!(names.users.get(&1000).map(String::as_str), Some("user"));
        assert_eq!(names.users.get(&1234).map(String::as_str), Some("dev"));
        assert_eq!(names.groups.get(&1000).map(String::as_str), Some("user"));
        assert_eq!((names.groups.len(), names.users.len()), (2, 5));
    }

    #[test]
    fn the_default_cwd_is_an_existing_home_else_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = |p: &Path| Identity { home: p.to_path_buf(), ..ident(1, 1, &[1], Some("u"), "/") };
        assert_eq!(home(dir.path()).default_cwd(), dir.path());
        assert_eq!(home(&dir.path().join("absent")).default_cwd(), PathBuf::from("/"));
        assert_eq!(home(Path::new("relative")).default_cwd(), PathBuf::from("/"));
    }

    #[test]
    fn the_files_are_read_only_if_regular_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_db(&dir.path().join("absent")), Ok(None));
        let file = dir.path().join("passwd");
        std::fs::write(&file, PASSWD).expect("write");
        assert_eq!(read_db(&file), Ok(Some(PASSWD.to_vec())));
        // A FIFO would block a plain open and read forever: refused at once.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        assert_eq!(read_db(&fifo), Err(format!("{} is not a regular file", fifo.display())));
        assert!(read_db(Path::new("/dev/zero")).expect_err("device").ends_with("is not a regular file"));
        assert!(read_db(dir.path()).is_err(), "a directory");
        let big = dir.path().join("big");
        std::fs::File::create(&big).and_then(|f| f.set_len(MAX_DB_BYTES + 1)).expect("sparse file");
        assert_eq!(read_db(&big), Err(format!("{} is larger than 16 MiB", big.display())));
    }
}
