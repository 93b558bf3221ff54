//! What a sandbox could leave behind on the host, host-wide, for leak tests: a snapshot
//! taken before many create/kill cycles must equal one taken after. Only meaningful while
//! no other sandbox comes or goes, so its callers hold `lock::sandbox_tests_lock(true)`;
//! what belongs to sandboxes of users of the host that take no lock (`sandstream up` in
//! the end-to-end suites, a developer's own) is set aside by `set_aside`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

/// Host state as `"<kind> <item>"` lines: every mount of this mount namespace, every
/// attached loop device (with its backing file: each oci sandbox's disk is one),
/// every cgroup of Sandstream's and Docker's (all hierarchies), network namespaces, links,
/// the filter and nat tables (counters stripped), the processes of container plumbing
/// and of sandboxes, and every path under each of `dirs` (state dirs, slots, runc's
/// state) down to the depth given with it.
pub fn snapshot(dirs: &[(&Path, usize)]) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    // An oci runtime starting anywhere on the host (another test process) adds
    // `favordynmods` to the cgroup filesystem's options, once and for good: not a leak.
    lines.extend(mountinfo.lines().map(|l| format!("mount {}", l.replace(",favordynmods", ""))));
    cgroups(Path::new("/sys/fs/cgroup"), "", 0, &mut lines);
    let netns = run(&["ip", "netns", "list"]);
    lines.extend(netns.lines().map(|l| format!("netns {}", l.split(' ').next().unwrap_or(l))));
    // `2: eth0@if5: <…> mtu …`: the name, without the peer index (it changes when an
    // unrelated link comes and goes).
    let links = run(&["ip", "-o", "link", "show"]);
    lines.extend(
        links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| format!("link {}", n.split('@').next().unwrap_or(n))),
    );
    for table in ["filter", "nat"] {
        let rules = run(&["iptables-save", "-t", table]);
        lines.extend(
            rules
                .lines()
                .filter(|l| l.starts_with(':') || l.starts_with("-A"))
                .map(|l| format!("iptables-{table} {}", l.split(" [").next().unwrap_or(l))),
        );
    }
    lines.extend(processes());
    lines.extend(loop_devices());
    for (dir, depth) in dirs {
        files(dir, *depth, &mut lines);
    }
    lines
}

/// Waits (up to 20 s) until `take()` holds nothing that `before` does not: some things
/// go asynchronously (Docker's shims and proxies exit after their container is removed).
/// Returns the last snapshot.
pub fn settled(before: &BTreeSet<String>, take: impl Fn() -> BTreeSet<String>) -> BTreeSet<String> {
    let started = Instant::now();
    loop {
        let now = take();
        if now.is_subset(before) || started.elapsed() > Duration::from_secs(20) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The sandbox suffixes (ten hex digits) a line names: in sandbox ids (`sb-`), link names
/// (`vs`, `vp`) and firewall chains (`SS-`, `SSD-`).
fn suffixes_in(line: &str) -> Vec<&str> {
    let b = line.as_bytes();
    let mut found = Vec::new();
    for prefix in ["sb-", "vs", "vp", "SS-", "SSD-"] {
        for (i, _) in line.match_indices(prefix) {
            let start = i + prefix.len();
            let hex = b[start..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if hex == 10 {
                found.push(&line[start..start + 10]);
            }
        }
    }
    found
}

/// `"loop /dev/loopN BACKING_FILE"` for every attached loop device.
pub fn loop_devices() -> Vec<String> {
    let Ok(devices) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    let mut out: Vec<String> = devices
        .flatten()
        .filter_map(|d| {
            let name = d.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(d.path().join("loop/backing_file")).ok()?;
            Some(format!("loop /dev/{name} {}", backing.trim()))
        })
        .collect();
    out.sort();
    out
}

/// Splits `lines` into what may concern this test and what belongs to sandboxes whose
/// suffix is not among `ours` (other users of the host, set aside): lines naming only
/// such sandboxes, directly or through a name bound to one elsewhere in the snapshot (a
/// sandbox's address in its `-d/-s ADDR/32` rules, and so its DNAT rules and slot file;
/// a container's full id, layer and network namespace in its `container` line). A line
/// naming no sandbox always concerns the test. (So does a line naming one of `ours`: only
/// a leak of the test's own that names nothing of it but an address or slot a foreign
/// sandbox took over since could be set aside, and only while such users run.)
pub fn set_aside(lines: &BTreeSet<String>, ours: &BTreeSet<String>) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut alias: HashMap<String, String> = HashMap::new();
    for line in lines {
        let [suffix] = suffixes_in(line)[..] else { continue };
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if let ("-d" | "-s", Some(ip)) = (pair[0], pair[1].strip_suffix("/32")) {
                alias.insert(format!("{ip}/32"), suffix.to_string());
                alias.insert(format!("{ip}:"), suffix.to_string());
                // docker-proxy's `-container-ip ADDR -container-port …`.
                alias.insert(format!("{ip} "), suffix.to_string());
            }
        }
        if words.first() == Some(&"container") {
            for w in words.iter().skip(1).filter(|w| suffixes_in(w).is_empty() && w.len() >= 12) {
                alias.insert(w.to_string(), suffix.to_string());
            }
        }
    }
    let (mut concern, mut foreign) = (BTreeSet::new(), BTreeSet::new());
    for line in lines {
        let mut owners: Vec<String> = suffixes_in(line).into_iter().map(String::from).collect();
        owners.extend(alias.iter().filter(|(a, _)| line.contains(a.as_str())).map(|(_, s)| s.clone()));
        // A slot file: the sandbox with the slot's address.
        if let Some(slot) = line.strip_prefix("file /run/sandstream/slots/").and_then(|n| n.parse::<u32>().ok()) {
            let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 88, 0, 0)) + slot * 4 + 2);
            owners.extend(alias.get(&format!("{ip}/32")).cloned());
        }
        if !owners.is_empty() && owners.iter().all(|o| !ours.contains(o)) {
            foreign.insert(line.clone());
        } else {
            concern.insert(line.clone());
        }
    }
    (concern, foreign)
}

/// Asserts that nothing is new in `after` and nothing gone from `before` but processes
/// (ended meanwhile: a shim of a container removed just before counting); anything else
/// gone is something removed that was not the test's. Says how much was set aside.
pub fn assert_unchanged(before: &BTreeSet<String>, after: &BTreeSet<String>, set_aside: &BTreeSet<String>) {
    if !set_aside.is_empty() {
        println!("set aside: {} lines of sandboxes this test did not create", set_aside.len());
    }
    let new = minus(after, before);
    let gone: Vec<_> = minus(before, after).into_iter().filter(|l| !l.starts_with("process ")).collect();
    assert!(new.is_empty() && gone.is_empty(), "host state changed: new {new:#?}, gone {gone:#?}");
}

/// Lines of `a` not in `b`.
pub fn minus(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b).cloned().collect()
}

fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Cgroup directories whose path names Sandstream or Docker, in every hierarchy.
fn cgroups(dir: &Path, rel: &str, depth: usize, lines: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if rel.contains("sandstream") || rel.contains("docker") {
            lines.insert(format!("cgroup {rel}"));
        }
        if depth < 6 {
            cgroups(&e.path(), &rel, depth + 1, lines);
        }
    }
}

/// Container plumbing (runc, crun, containerd shims, docker-proxy), sandbox agents, and every
/// process in a Sandstream or Docker cgroup or naming a sandbox.
fn processes() -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let read = |f: &str| std::fs::read(e.path().join(f)).map(|b| String::from_utf8_lossy(&b).into_owned());
        let (Ok(comm), Ok(cmdline), Ok(cgroup)) = (read("comm"), read("cmdline"), read("cgroup")) else { continue };
        let comm = comm.trim();
        let cmdline = cmdline.replace('\0', " ");
        let plumbing = ["runc", "crun", "containerd-shim", "docker-proxy"].iter().any(|p| comm.starts_with(p));
        let sandboxed = cgroup.contains(":/sandstream/") || cgroup.contains(":/docker/");
        let agent = cmdline.starts_with("/.sandstream/agent");
        if plumbing || sandboxed || agent || !suffixes_in(&cmdline).is_empty() {
            let cmdline: String = cmdline.trim().chars().take(160).collect();
            // Its Sandstream or Docker cgroup, which names its sandbox or container.
            let group = cgroup
                .lines()
                .filter_map(|l| l.splitn(3, ':').nth(2))
                .find(|p| p.starts_with("/sandstream/") || p.starts_with("/docker/"))
                .unwrap_or("-");
            found.push(format!("process {name} {comm} {group} {cmdline}"));
        }
    }
    found
}

/// Every path under `dir`, `depth` levels down, but not inside a container's filesystem
/// layers: those hold the template's and the sandbox's own files (and the directory
/// holding them is listed).
fn files(dir: &Path, depth: usize, lines: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        lines.insert(format!("file {}", path.display()));
        let layer =
            path.file_name().is_some_and(|n| ["rootfs", "upper", "work", "diff", "merged"].iter().any(|l| n == *l));
        if depth > 1 && e.file_type().is_ok_and(|t| t.is_dir()) && !layer {
            files(&path, depth - 1, lines);
        }
    }
}
