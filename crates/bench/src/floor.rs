//! Floors: minimal programs doing the bare operation a benchmark's workload rests on, measured
//! in the same run as the benchmark so the ratio survives the machine's ±20% drift.

use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns `/bin/true` and waits for it, `n` times; with `namespaces`, the child first leaves
/// into new network, UTS, IPC and mount namespaces (what a pod of one container costs at
/// minimum: [`podvisor_runtime::with_new_pod_namespaces`]).
pub(crate) fn spawn_wait(n: usize, namespaces: bool) -> io::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cmd = Command::new("/bin/true");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if namespaces {
            podvisor_runtime::with_new_pod_namespaces(&mut cmd);
        }
        let start = Instant::now();
        let status = cmd.spawn()?.wait()?;
        samples.push(start.elapsed());
        if !status.success() {
            return Err(io::Error::other(format!("/bin/true exited with {status}")));
        }
    }
    Ok(samples)
}

/// The restart floor: a minimal supervisor kills its `sleep` child with SIGKILL, reaps it with
/// waitpid and spawns the replacement; the time from the kill until the replacement's spawn
/// returned (exec done), `n` times.
///
/// Each `sleep` is killed once it sleeps, as the benchmark's containers are: killed the moment
/// its spawn returned, it was still in its loader, running on an awake CPU, with half its
/// libraries mapped; a sleeping one must be woken to die (on a virtual machine whose idle CPUs
/// halt, that wake is the dearest step) and unmaps everything it loaded.
pub(crate) fn kill_wait_respawn(n: usize) -> io::Result<Vec<Duration>> {
    let spawn = || {
        Command::new("sleep")
            .arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let mut samples = Vec::with_capacity(n);
    let mut child = spawn()?;
    for _ in 0..n {
        wait_until_asleep(child.id());
        let start = Instant::now();
        child.kill()?;
        child.wait()?;
        child = spawn()?;
        samples.push(start.elapsed());
    }
    child.kill()?;
    child.wait()?;
    Ok(samples)
}

/// Waits (for at most a second) until process `pid` sleeps: state `S` in `/proc/<pid>/stat`.
/// A `sleep` that has executed reaches its `nanosleep` within a millisecond or so; its loader
/// never blocks (its libraries are in the page cache once the first one ran). The floor runs
/// on a thread of its own (the blocking pool), so it sleeps between looks.
#[allow(clippy::disallowed_methods)]
fn wait_until_asleep(pid: u32) {
    for _ in 0..10_000 {
        let stat = i32::try_from(pid).ok().and_then(podvisor_runtime::process::stat);
        if stat.is_some_and(|s| s.state == 'S') {
            return;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
