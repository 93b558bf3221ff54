//! One host-wide lock for every test and benchmark that creates sandboxes or other
//! host-wide things (network namespaces, links, firewall rules), whatever its backend or
//! crate: each holds it shared while it runs; a leak test holds it exclusive, so that
//! what it counts host-wide (mounts, cgroups, namespaces, links, rules, processes)
//! changes only through its own sandboxes. Included by path outside this crate's tests
//! (`#[path = ".../support/lock.rs"]`), so it uses nothing but std and nix.

/// The lock file; fixed, so that test binaries of every crate and the benchmarks agree.
pub const SANDBOX_TESTS_LOCK: &str = "/run/sandstream/tests.lock";

/// Blocks until the lock is held, shared (`exclusive == false`) or exclusive; released
/// when the returned value is dropped (or the process ends).
pub fn sandbox_tests_lock(exclusive: bool) -> nix::fcntl::Flock<std::fs::File> {
    std::fs::create_dir_all("/run/sandstream").expect("create /run/sandstream");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SANDBOX_TESTS_LOCK)
        .expect("open the sandbox tests' lock file");
    let how = if exclusive { nix::fcntl::FlockArg::LockExclusive } else { nix::fcntl::FlockArg::LockShared };
    nix::fcntl::Flock::lock(f, how).map_err(|(_, e)| e).expect("flock the sandbox tests' lock file")
}
