//! Peers (supervisord, pm2): detected on `PATH`. They are never installed by the harness; when
//! absent, a note says how to install them.

use std::process::{Command, Stdio};

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One note per peer: skipped (with how to install it), or found but not yet benchmarked
/// side by side.
pub(crate) fn notes() -> Vec<String> {
    [("supervisord", "pip install supervisor"), ("pm2", "npm i -g pm2")]
        .iter()
        .map(|(peer, install)| {
            if installed(peer) {
                format!(
                    "peer {peer}: installed, but the side-by-side peer runs are not written yet \
                 (see docs/performance.md for figures measured on this machine class)"
                )
            } else {
                format!("peer {peer}: not installed, skipped (install with `{install}`)")
            }
        })
        .collect()
}
