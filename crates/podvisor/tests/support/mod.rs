//! What the binary's tests share: a `podvisor` process that is stopped (and its pods' `sleep`
//! processes killed) if a test fails midway, a reaper for the processes of pods an agent could
//! not stop, kubectl, finding processes, and a multi-host rig of network namespaces on a test
//! bridge ([`netns`]).
#![allow(dead_code, reason = "each test binary uses part of it")]

pub(crate) mod netns;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A `podvisor` process, stopped with SIGTERM (SIGKILL after 30 s) when dropped, then the
/// `sleep <arg>` processes of its pods for each arg are killed.
pub(crate) struct NodeProcess(pub(crate) Child, pub(crate) &'static [&'static str]);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = send_signal(self.0.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        for arg in self.1 {
            for pid in sleeping(arg) {
                let _ = send_signal(pid, "KILL");
            }
        }
    }
}

/// Kills (SIGKILL) every process whose command line mentions `marker`, when dropped: the pods'
/// processes, if an agent could not stop them.
pub(crate) struct Reaper(pub(crate) String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&self.0) && pid != std::process::id() {
                let _ = send_signal(pid, "KILL");
            }
        }
    }
}

pub(crate) fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl runs (cargo xtask test installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `kubectl args` until `check` holds for its output (up to 60 s); returns that output.
pub(crate) fn until(kubeconfig: &Path, args: &[&str], check: impl Fn(&str) -> bool) -> String {
    until_within(Duration::from_secs(60), kubeconfig, args, check)
}

/// [`until`] with a bound of `limit`.
pub(crate) fn until_within(
    limit: Duration,
    kubeconfig: &Path,
    args: &[&str],
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = kubectl(kubeconfig, args);
        if check(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} never satisfied the check:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pids of the live processes whose command line is `sleep <arg>`.
pub(crate) fn sleeping(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if cmdline == format!("sleep\0{arg}\0").as_bytes() && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Sends a signal with the `kill` program (the test needs no signal crate for one call).
pub(crate) fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}
