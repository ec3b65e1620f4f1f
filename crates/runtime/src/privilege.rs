//! Whether this process has the privileges sandboxes, cgroups and mounts need.

/// Whether the process runs as root (effective user 0). Without it every pod uses the host
/// network, and the root-only tests refuse to run.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_with_proc_self_status() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .map(str::to_string);
        assert_eq!(super::is_root(), euid.as_deref() == Some("0"), "{status}");
    }
}
