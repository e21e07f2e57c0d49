//! The CPUs a process may poll on: its affinity mask, and whether its cgroup has a CFS quota.

/// What the automatic mode checks before it polls (read once, when a shim client or a sidecar
/// starts: a pod's cgroup and cpuset do not change under it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpus {
    /// CPUs in the affinity mask of the process's main thread.
    pub usable: usize,
    /// A CFS bandwidth limit (`cpu.max` not `max`, or `cpu.cfs_quota_us` not -1) on the cgroup
    /// or one of its ancestors, or no way to tell. Inside a cgroup namespace only the cgroups
    /// from the namespace's root down are visible: a container's own limit is, a pod-level one
    /// above it is not.
    pub quota: bool,
}

impl Cpus {
    /// This process's CPUs; where it cannot tell, one CPU or a quota (polling never pays where
    /// we cannot tell).
    pub fn of_this_process() -> Cpus {
        Cpus {
            usable: usable_cpus().unwrap_or(1),
            quota: has_quota(&read("/proc/self/cgroup"), read),
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn usable_cpus() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data and all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: no arguments, cannot fail.
    let pid = unsafe { libc::getpid() };
    // SAFETY: `set` is a live, writable cpu_set_t of the size given; the process id names the
    // main thread (a calling thread pinned to one CPU is not the process's share of the CPUs).
    let rc = unsafe { libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return None;
    }
    // SAFETY: CPU_COUNT reads the set it is given, a valid cpu_set_t.
    Some(unsafe { libc::CPU_COUNT(&set) } as usize)
}

/// Whether the cgroup named in `proc_self_cgroup` (the text of /proc/self/cgroup) or an ancestor
/// has a CPU quota, reading control files through `read` (empty when absent). cgroup v2: the
/// unified line `0::/path`, `cpu.max` of each directory up to the root; v1: the `cpu` controller's
/// `cpu.cfs_quota_us`. Inside a container's cgroup namespace the path is `/`. What cannot be read
/// (no /proc/self/cgroup, no hierarchy with the cpu controller mounted, a path outside the
/// namespace's root) counts as a quota.
pub(crate) fn has_quota(proc_self_cgroup: &str, read: impl Fn(&str) -> String) -> bool {
    let mut seen = false;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        // Where the hierarchy is mounted: the unified one at /sys/fs/cgroup, or at
        // /sys/fs/cgroup/unified beside v1 controllers (hybrid); v1's cpu at /sys/fs/cgroup/cpu.
        let (root, file) = if controllers.is_empty() {
            match ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .into_iter()
                .find(|r| !read(&format!("{r}/cgroup.controllers")).trim().is_empty())
            {
                Some(root) => (root, "cpu.max"),
                // Not mounted, or no controller enabled: this line says nothing.
                None => continue,
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            if read("/sys/fs/cgroup/cpu/cpu.cfs_period_us").trim().is_empty() {
                continue;
            }
            ("/sys/fs/cgroup/cpu", "cpu.cfs_quota_us")
        } else {
            continue;
        };
        seen = true;
        // Never walk out of the cgroup tree, whatever the path says; a cgroup above the
        // namespace's root (`/..`) is one we cannot see.
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return true;
        }
        let mut dir = path.trim_end_matches('/');
        loop {
            if is_limit(&read(&format!("{root}{dir}/{file}"))) {
                return true;
            }
            match dir.rfind('/') {
                Some(i) => dir = &dir[..i],
                None => break,
            }
        }
    }
    !seen
}

/// A `cpu.max` (`QUOTA PERIOD`) or `cpu.cfs_quota_us` value that limits.
fn is_limit(value: &str) -> bool {
    let limit = value.split_whitespace().next().unwrap_or("");
    !limit.is_empty() && limit != "max" && limit != "-1"
}
