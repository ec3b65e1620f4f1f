//! The node raises its own open-file limit: alone in its test binary, because it changes a
//! process-wide limit.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or_else(|e| panic!("{e}"));
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    // Start from a soft limit below whatever the hard limit is, so there is always room to raise.
    let low = (hard / 2).clamp(1, 256);
    setrlimit(Resource::RLIMIT_NOFILE, low, hard).unwrap_or_else(|e| panic!("{e}"));
    let (before, after) =
        podvisor_runtime::process::raise_open_file_limit().unwrap_or_else(|e| panic!("{e}"));
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(before, low);
    assert_eq!(soft, after);
    assert_eq!(
        after,
        hard.min(nr_open),
        "raised to the hard limit (at most fs.nr_open)"
    );
}
