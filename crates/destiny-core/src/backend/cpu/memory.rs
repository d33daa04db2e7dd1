//! How much memory this process can still take: what the kernel says is available, lowered
//! to the container's limit where a cgroup sets one (CI runners and Spark executors often
//! run under one smaller than the machine).

use std::path::Path;

/// Bytes available to this process, if the system says.
pub fn available() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_available(&text));
    let limited = cgroup_headroom(Path::new("/sys/fs/cgroup"));
    match (machine, limited) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// A cgroup v2 limit minus what the group uses, if the group has a limit.
fn cgroup_headroom(root: &Path) -> Option<u64> {
    let read = |name: &str| std::fs::read_to_string(root.join(name)).ok();
    let limit: u64 = read("memory.max")?.trim().parse().ok()?; // "max" means none
    let used: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(limit.saturating_sub(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_and_cgroup_limits() {
        let meminfo =
            "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(mem_available(meminfo), Some(12_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(folder.path().join("memory.current"), "100\n").unwrap();
        assert_eq!(cgroup_headroom(folder.path()), None, "no limit");
        std::fs::write(folder.path().join("memory.max"), "1000\n").unwrap();
        assert_eq!(cgroup_headroom(folder.path()), Some(900));
        assert!(available().is_some_and(|bytes| bytes > 0));
    }
}
