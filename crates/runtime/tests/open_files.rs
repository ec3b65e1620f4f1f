//! The node raises its own open-file limit: alone in its test binary, because it changes a
//! process-wide limit.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or_else(|e| panic!("{e}"));
    if hard <= 256 {
        eprintln!("SKIPPED: the hard limit ({hard}) leaves nothing to raise");
        return;
    }
    setrlimit(Resource::RLIMIT_NOFILE, 256, hard).unwrap_or_else(|e| panic!("{e}"));
    let (before, after) =
        podvisor_runtime::process::raise_open_file_limit().unwrap_or_else(|e| panic!("{e}"));
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(before, 256);
    assert_eq!(soft, after);
    assert!(after > 1024, "raised to {after} (hard limit {hard})");
}
