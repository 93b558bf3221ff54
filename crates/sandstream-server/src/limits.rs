//! What one caller may cost: a slow-down for wrong keys (per source address), a request
//! rate per key, and the configured bounds a sandbox request and a tenant's sandboxes
//! (count, memory, disk) must stay within. Each refusal is a 429 with `Retry-After` or a
//! 400 naming the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::AppError;
use crate::store::Usage;

/// Limits an operator sets (flags of `sandstream server` and `up`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most memory one sandbox may ask for, in MiB.
    pub max_memory_mb: u32,
    /// Most CPUs one sandbox may ask for.
    pub max_cpu: f64,
    /// Longest a sandbox may live, from its creation, whatever timeouts it is given.
    pub max_lifetime_ms: u64,
    /// Most sandboxes one key has at once (running or lost).
    pub max_sandboxes_per_key: u32,
    /// Most memory one key's sandboxes have together, in MiB.
    pub max_memory_mb_per_key: u64,
    /// Most disk (`diskMb`) one key's sandboxes have together, in MiB.
    pub max_disk_mb_per_key: u64,
    /// What a create without `diskMb` counts against [`Limits::max_disk_mb_per_key`]:
    /// the runners' `--default-disk-mb` (under `up`, the local runner's).
    pub default_disk_mb: u32,
    /// Requests per second one key may make, sustained; `burst` more at once.
    pub requests_per_sec: f64,
    pub burst: f64,
    /// Wrong keys from one address within [`FAILURE_WINDOW`] before it is refused (429)
    /// until the window ends.
    pub auth_failures: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_memory_mb: host_memory_mb().unwrap_or(8192),
            max_cpu: std::thread::available_parallelism().map_or(4, |n| n.get()) as f64,
            max_lifetime_ms: 24 * 3600 * 1000,
            max_sandboxes_per_key: 50,
            max_memory_mb_per_key: u64::from(host_memory_mb().unwrap_or(8192)),
            max_disk_mb_per_key: DEFAULT_DISK_MB_PER_KEY,
            default_disk_mb: sandstream_runner_protocol::DEFAULT_DISK_MB,
            requests_per_sec: 100.0,
            burst: 400.0,
            auth_failures: 20,
        }
    }
}

/// [`Limits::max_disk_mb_per_key`] when not configured: 500 GiB, fifty sandboxes of the
/// default 10 GiB disk. At the default sizes a key meets its count limit (50) first; the
/// disk quota stops it from promising itself more by asking for large disks (ten at the
/// runners' default 50 GiB maximum). Disks are sparse, so this bounds what a key may
/// fill, not what it uses.
pub const DEFAULT_DISK_MB_PER_KEY: u64 = 50 * 10 * 1024;

/// The host's memory (MemTotal), in MiB.
fn host_memory_mb() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 =
        text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    u32::try_from(kb / 1024).ok()
}

/// How long wrong keys are counted, and refused once too many.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Entries kept per table before idle ones are dropped.
const TABLE_MAX: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Failures {
    count: u32,
    since: Instant,
}

/// The counters behind the limits. Memory is bounded: idle entries are dropped once a
/// table grows past [`TABLE_MAX`].
pub(crate) struct Throttle {
    limits: Limits,
    buckets: Mutex<HashMap<String, Bucket>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Each tenant's creates under way, counted with its stored sandboxes.
    creating: Mutex<HashMap<String, Usage>>,
}

/// A tenant's create under way, counted against its quota until dropped (after the
/// sandbox is stored, or the create failed).
pub(crate) struct TenantSlot<'a> {
    tenant: String,
    ask: Usage,
    creating: &'a Mutex<HashMap<String, Usage>>,
}

impl Drop for TenantSlot<'_> {
    fn drop(&mut self) {
        let mut creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pending) = creating.get_mut(&self.tenant) {
            pending.sub(self.ask);
            if pending.count == 0 {
                creating.remove(&self.tenant);
            }
        }
    }
}

fn too_many(message: String, retry: Duration) -> AppError {
    AppError::TooManyRequests { message, retry_after_secs: retry.as_secs().max(1) }
}

impl Throttle {
    pub(crate) fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses an address that sent too many wrong keys lately, before its key is
    /// looked at: guessing keys costs a minute per [`Limits::auth_failures`] tries.
    pub(crate) fn check_address(&self, ip: Option<IpAddr>) -> Result<(), AppError> {
        let Some(ip) = ip else { return Ok(()) };
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&ip) {
            Some(f) if f.count >= self.limits.auth_failures && now.duration_since(f.since) < FAILURE_WINDOW => {
                Err(too_many(
                    format!("too many wrong API keys from {ip}; try again later"),
                    FAILURE_WINDOW - now.duration_since(f.since),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Counts a wrong key from `ip`.
    pub(crate) fn failed(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= TABLE_MAX {
            failures.retain(|_, f| now.duration_since(f.since) < FAILURE_WINDOW);
        }
        let f = failures.entry(ip).or_insert(Failures { count: 0, since: now });
        if now.duration_since(f.since) >= FAILURE_WINDOW {
            *f = Failures { count: 0, since: now };
        }
        f.count = f.count.saturating_add(1);
        if f.count == self.limits.auth_failures {
            tracing::warn!(address = %ip, failures = f.count, "too many wrong API keys; refusing this address for a while");
        }
    }

    /// Takes one request from key `key_id`'s bucket.
    pub(crate) fn request(&self, key_id: &str) -> Result<(), AppError> {
        let (rate, burst) = (self.limits.requests_per_sec, self.limits.burst.max(1.0));
        if rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= TABLE_MAX {
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key_id.to_string()).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - b.tokens) / rate);
        Err(too_many(format!("more than {rate} requests per second with this key; slow down"), wait))
    }

    /// Checks one sandbox request against the per-sandbox bounds.
    pub(crate) fn check_sandbox(&self, cpu: f64, memory_mb: u32, timeout_ms: u64) -> Result<(), AppError> {
        let l = &self.limits;
        if cpu > l.max_cpu {
            return Err(AppError::BadRequest(format!("cpu {cpu} is more than this server allows ({})", l.max_cpu)));
        }
        if memory_mb > l.max_memory_mb {
            return Err(AppError::BadRequest(format!(
                "memoryMb {memory_mb} is more than this server allows ({})",
                l.max_memory_mb
            )));
        }
        self.check_lifetime(0, timeout_ms)
    }

    /// Whether a sandbox `age_ms` old may live `timeout_ms` more.
    pub(crate) fn check_lifetime(&self, age_ms: u64, timeout_ms: u64) -> Result<(), AppError> {
        let max = self.limits.max_lifetime_ms;
        if age_ms.saturating_add(timeout_ms) > max {
            return Err(AppError::BadRequest(format!(
                "a sandbox lives at most {max} ms from its creation on this server; this one is {age_ms} ms old, so its timeout can be at most {} ms",
                max.saturating_sub(age_ms)
            )));
        }
        Ok(())
    }

    /// Holds room in `tenant`'s quota for one more sandbox of `memory_mb` and `disk_mb`,
    /// or refuses. `stored` reads what its stored sandboxes use; it is called under the
    /// lock that counts creates under way, so concurrent creates cannot pass together.
    pub(crate) fn reserve_tenant<E: From<AppError>>(
        &self,
        tenant: &str,
        memory_mb: u32,
        disk_mb: u32,
        stored: impl FnOnce() -> Result<Usage, E>,
    ) -> Result<TenantSlot<'_>, E> {
        let ask = Usage::one(memory_mb, disk_mb);
        self.check_fits(ask)?;
        let mut creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        let mut used = stored()?;
        used.add(creating.get(tenant).copied().unwrap_or_default());
        self.check_tenant(used, ask)?;
        creating.entry(tenant.to_string()).or_default().add(ask);
        Ok(TenantSlot { tenant: tenant.to_string(), ask, creating: &self.creating })
    }

    /// A sandbox bigger than a key's whole quota never fits: a 400, not a 429 to retry.
    fn check_fits(&self, ask: Usage) -> Result<(), AppError> {
        let l = &self.limits;
        if ask.memory_mb > l.max_memory_mb_per_key {
            return Err(AppError::BadRequest(format!(
                "memoryMb {} is more than one key may have in all on this server ({} MiB)",
                ask.memory_mb, l.max_memory_mb_per_key
            )));
        }
        if ask.disk_mb > l.max_disk_mb_per_key {
            return Err(AppError::BadRequest(format!(
                "diskMb {} is more than one key may have in all on this server ({} MiB)",
                ask.disk_mb, l.max_disk_mb_per_key
            )));
        }
        Ok(())
    }

    /// Whether a key whose sandboxes take `used` may add `ask`.
    pub(crate) fn check_tenant(&self, used: Usage, ask: Usage) -> Result<(), AppError> {
        let l = &self.limits;
        let count = used.count;
        if count >= l.max_sandboxes_per_key {
            return Err(too_many(
                format!("this key has {count} sandboxes, its limit; kill one or wait for one to end"),
                Duration::from_secs(5),
            ));
        }
        for (what, have, more, limit) in [
            ("memory", used.memory_mb, ask.memory_mb, l.max_memory_mb_per_key),
            ("disk", used.disk_mb, ask.disk_mb, l.max_disk_mb_per_key),
        ] {
            if have.saturating_add(more) > limit {
                return Err(too_many(
                    format!(
                        "this key's sandboxes have {have} MiB of {what}; another {more} MiB would pass its limit of {limit} MiB"
                    ),
                    Duration::from_secs(5),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(f: impl FnOnce(&mut Limits)) -> Throttle {
        let mut l = Limits::default();
        f(&mut l);
        Throttle::new(l)
    }

    fn retry_after(e: AppError) -> u64 {
        match e {
            AppError::TooManyRequests { retry_after_secs, .. } => retry_after_secs,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_address_is_refused_after_too_many_wrong_keys_and_others_are_not() {
        let t = throttle(|l| l.auth_failures = 3);
        let (bad, good): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        for _ in 0..3 {
            t.check_address(Some(bad)).expect("not yet");
            t.failed(Some(bad));
        }
        let wait = retry_after(t.check_address(Some(bad)).expect_err("refused"));
        assert!((1..=60).contains(&wait), "{wait}");
        t.check_address(Some(good)).expect("another address is not refused");
        t.check_address(None).expect("no address: not refused");
    }

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let t = throttle(|l| {
            l.requests_per_sec = 10.0;
            l.burst = 5.0;
        });
        for _ in 0..5 {
            t.request("key_a").expect("within the burst");
        }
        assert!(retry_after(t.request("key_a").expect_err("past the burst")) >= 1);
        t.request("key_b").expect("another key has its own bucket");
        std::thread::sleep(Duration::from_millis(250));
        t.request("key_a").expect("refilled at the rate");
    }

    #[test]
    fn sandbox_and_tenant_bounds_name_their_limit() {
        let t = throttle(|l| {
            l.max_cpu = 2.0;
            l.max_memory_mb = 1024;
            l.max_lifetime_ms = 3_600_000;
            l.max_sandboxes_per_key = 2;
            l.max_memory_mb_per_key = 1536;
            l.max_disk_mb_per_key = 1000;
        });
        t.check_sandbox(2.0, 1024, 3_600_000).expect("at the bounds");
        let msg = |e: AppError| e.to_string();
        assert!(msg(t.check_sandbox(64.0, 512, 1000).expect_err("cpu")).contains("(2)"));
        assert!(msg(t.check_sandbox(1.0, 262_144, 1000).expect_err("memory")).contains("(1024)"));
        assert!(msg(t.check_sandbox(1.0, 512, 3_600_001).expect_err("timeout")).contains("3600000 ms"));
        // Extending: the lifetime counts from the creation.
        t.check_lifetime(3_000_000, 600_000).expect("within the lifetime");
        assert!(t.check_lifetime(3_000_000, 600_001).is_err());
        let used = |count, memory_mb, disk_mb| Usage { count, memory_mb, disk_mb };
        t.check_tenant(used(1, 512, 0), Usage::one(1024, 1000)).expect("within the tenant's limits");
        // Creates under way count: the second of two concurrent ones is refused.
        let first = t.reserve_tenant::<AppError>("key_a", 512, 16, || Ok(used(1, 512, 16))).expect("first");
        assert!(t.reserve_tenant::<AppError>("key_a", 512, 16, || Ok(used(1, 512, 16))).is_err());
        t.reserve_tenant::<AppError>("key_b", 512, 16, || Ok(Usage::default())).expect("another tenant");
        drop(first);
        t.reserve_tenant::<AppError>("key_a", 512, 16, || Ok(used(1, 512, 16))).expect("room again");
        assert!(retry_after(t.check_tenant(used(2, 0, 0), Usage::one(16, 16)).expect_err("count")) >= 1);
        assert!(msg(t.check_tenant(used(1, 1024, 0), Usage::one(1024, 16)).expect_err("memory")).contains("1536 MiB"));
    }

    #[test]
    fn a_keys_disk_quota_counts_stored_sandboxes_and_creates_under_way() {
        let t = throttle(|l| {
            l.max_sandboxes_per_key = 10;
            l.max_disk_mb_per_key = 1000;
        });
        let stored = || Ok::<_, AppError>(Usage { count: 1, memory_mb: 0, disk_mb: 300 });
        // 300 stored + 600 under way: another 200 passes 1000, 100 fits (at the limit).
        let first = t.reserve_tenant("key_a", 16, 600, stored).expect("900 of 1000");
        let over = t.reserve_tenant("key_a", 16, 200, stored).err().expect("1100 of 1000");
        assert!(retry_after(over) >= 1);
        let e = t.reserve_tenant("key_a", 16, 200, stored).err().expect("still over").to_string();
        assert_eq!(e, "this key's sandboxes have 900 MiB of disk; another 200 MiB would pass its limit of 1000 MiB");
        let at_limit = t.reserve_tenant("key_a", 16, 100, stored).expect("exactly 1000");
        // Another key has its own quota; a failed or finished create gives its room back.
        t.reserve_tenant("key_b", 16, 1000, || Ok::<_, AppError>(Usage::default())).expect("another key");
        drop(first);
        drop(at_limit);
        t.reserve_tenant("key_a", 16, 700, stored).expect("room again");
        // More than the whole quota can never fit: a 400 naming it, not a 429.
        let e = t.reserve_tenant("key_c", 16, 1001, || Ok::<_, AppError>(Usage::default())).err().expect("too big");
        assert!(matches!(e, AppError::BadRequest(_)), "{e:?}");
        assert_eq!(e.to_string(), "diskMb 1001 is more than one key may have in all on this server (1000 MiB)");
    }

    #[test]
    fn parallel_reservations_never_pass_the_disk_quota_together() {
        let t = std::sync::Arc::new(throttle(|l| {
            l.max_sandboxes_per_key = 1000;
            l.max_disk_mb_per_key = 1000;
        }));
        // 40 threads each try to hold 100 MiB at once; each holds its slot until all
        // have tried, so nothing is given back in between.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(40));
        let held: Vec<bool> = (0..40)
            .map(|_| {
                let (t, barrier) = (t.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let slot = t.reserve_tenant("key_a", 16, 100, || Ok::<_, AppError>(Usage::default()));
                    let ok = slot.is_ok();
                    barrier.wait();
                    ok
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(held.iter().filter(|ok| **ok).count(), 10, "1000 MiB holds ten of 100 MiB");
    }
}
