//! Creating a container's main process: `clone3` straight into its cgroup v2 group, or
//! `std::process` with a `pre_exec` hook where the kernel has no `clone3`. What the child does
//! before exec is [`crate::spawn::setup_child`].

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::spawn::{MainProcess, MonitorLaunch, Monitored, Spawned, setup_child};

pub(super) use clone3::{own_fds, reset_handlers, vfork};

/// Spawns the container's main process as the child of its monitor: a process cloned from
/// here that shares our memory until it execs (`CLONE_VM | CLONE_VFORK`) and, until it takes
/// the few it needs, our descriptor table (`CLONE_FILES`, see [`crate::sys::park`]), creates the main
/// process exactly as [`spawn`] does (`clone3` into its cgroup), becomes a child subreaper in a
/// session of its own and then execs the monitor program with the output's reading ends.
/// `Ok(None)` where this is not available (no `clone3` with a stack here, or no cgroup v2
/// `clone3` in the kernel): the caller starts the process itself.
pub(crate) fn spawn_monitored(p: &MainProcess<'_>, m: MonitorLaunch<'_>) -> io::Result<Option<Monitored>> {
    if !cfg!(target_arch = "x86_64") {
        return Ok(None);
    }
    let stdin = match &p.stdin {
        Some(fd) => fd,
        None => crate::sys::dev_null()?,
    };
    clone3::spawn_monitored(
        p.program,
        p.argv,
        p.env,
        &p.setup,
        [stdin, &p.stdout, &p.stderr],
        m,
    )
}

/// Spawns the container's main process: with `clone3` straight into its cgroup v2 group (no
/// migration afterwards) where the kernel has it (5.7+), else through `std::process` with a
/// `pre_exec` hook. Exec's commands (probes, hooks, `kubectl exec`) are spawned here too.
pub(crate) fn spawn(p: MainProcess<'_>) -> io::Result<Spawned> {
    let MainProcess {
        program,
        argv,
        env,
        mut setup,
        stdin,
        stdout,
        stderr,
    } = p;
    let in_stdin = match &stdin {
        Some(fd) => fd,
        None => crate::sys::dev_null()?,
    };
    if let Some(spawned) = clone3::spawn(program, argv, env, &setup, [in_stdin, &stdout, &stderr])? {
        return Ok(spawned);
    }
    let stdin = match stdin {
        Some(fd) => fd,
        None => crate::sys::dev_null()?.try_clone()?,
    };
    // Without `clone3` the child joins its v2 group by writing itself to it.
    let groups = &mut setup.cgroups;
    if let (Some(dir), None) = (&groups.v2_dir, &groups.v2_procs) {
        groups.v2_procs = Some(crate::sys::open_in(dir, c"cgroup.procs", libc::O_WRONLY)?);
    }
    let mut cmd = Command::new(program);
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(argv.iter().skip(1))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    let hook = move || setup_child(&setup, false);
    // SAFETY: the hook runs between fork and exec in the child and only makes system calls
    // (setsid, write, setns, unshare, mount, mkdir, mknod, open, symlinkat, chroot, chdir,
    // set*id) on data prepared before the fork; it does not allocate (nix passes the prepared
    // `CStr`s straight through) or take locks.
    unsafe {
        cmd.pre_exec(hook);
    }
    let child = cmd.spawn()?;
    Ok(Spawned {
        pid: child.id() as i32,
        pidfd: None,
    })
}

mod clone3;

#[cfg(test)]
mod tests {
    use std::io::Read;

    use std::ffi::CString;
    use std::fs;

    use std::os::fd::OwnedFd;
    use std::path::Path;

    use super::*;
    use crate::spawn::{CgroupJoin, ChildSetup, JoinFds};

    fn setup(cwd: &str) -> ChildSetup {
        ChildSetup {
            cgroups: CgroupJoin::default(),
            join: JoinFds::default(),
            mounts: None,
            cwd: CString::new(cwd).unwrap(),
            uid: None,
            gid: None,
            controlling_terminal: false,
            own_session: true,
        }
    }

    fn pipe() -> (fs::File, OwnedFd) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (fs::File::from(r), w)
    }

    #[test]
    fn the_child_gets_default_signals_stdio_a_session_and_the_directory() {
        let _children = crate::TEST_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        let (mut out, out_w) = pipe();
        let (_err, err_w) = pipe();
        let argv = [
            "sh",
            "-c",
            "grep -E '^(SigIgn|SigBlk|Cpus_allowed_list)' /proc/self/status; pwd; echo $FOO; ps -o sid= -p $$",
        ]
        .map(String::from);
        let env = [
            ("FOO".to_string(), "bar".to_string()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ];
        let spawned = spawn(MainProcess {
            program: Path::new("/bin/sh"),
            argv: &argv,
            env: &env,
            setup: setup("/tmp"),
            stdin: None,
            stdout: out_w,
            stderr: err_w,
        })
        .unwrap();
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(spawned.pid), 0)
        );
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines[0], "SigBlk:\t0000000000000000", "nothing blocked: {text}");
        let ignored = u64::from_str_radix(lines[1].trim_start_matches("SigIgn:\t"), 16).unwrap();
        assert_eq!(
            ignored & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE back to default: {text}"
        );
        let ours = fs::read_to_string("/proc/thread-self/status").unwrap();
        let allowed = ours.lines().find(|l| l.starts_with("Cpus_allowed_list")).unwrap();
        assert_eq!(
            lines[2],
            allowed.trim(),
            "the CPUs it may run on are ours: {text}"
        );
        assert_eq!(lines[3], "/tmp");
        assert_eq!(lines[4], "bar");
        assert_eq!(
            lines[5],
            spawned.pid.to_string(),
            "the process leads its own session"
        );
    }

    #[test]
    fn moving_to_another_cpu_moves_the_thread_and_keeps_its_affinity() {
        std::thread::spawn(|| {
            let size = std::mem::size_of::<libc::cpu_set_t>();
            let affinity = || {
                // SAFETY: fills a local, zeroed set of `size` bytes.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
                    set
                }
            };
            // SAFETY: takes nothing.
            let cpu_now = || unsafe { libc::sched_getcpu() };
            let before = affinity();
            // Another try if the scheduler moved the thread between finding its CPU and the
            // move (it then does nothing).
            let mut moved = None;
            for _ in 0..10 {
                let cpu = cpu_now();
                // SAFETY: CPU_ISSET reads a valid set.
                let other = (0..8 * size)
                    .find(|c| i32::try_from(*c) != Ok(cpu) && unsafe { libc::CPU_ISSET(*c, &before) });
                let Some(to) = other.and_then(|c| i32::try_from(c).ok()) else {
                    return; // one CPU: nowhere to go
                };
                // SAFETY: system calls on this thread only.
                assert_eq!(unsafe { clone3::move_cpu(cpu, to) }, 0);
                // Right after the move: nothing has had time to balance it back.
                if cpu_now() == to {
                    moved = Some(to);
                    break;
                }
            }
            assert!(moved.is_some(), "the thread moved to the other CPU");
            // SAFETY: CPU_EQUAL compares two valid sets.
            let same = unsafe { libc::CPU_EQUAL(&before, &affinity()) };
            assert!(same, "the affinity is unchanged");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_failure_before_exec_is_returned_and_the_child_reaped() {
        let _children = crate::TEST_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        let (_out, out_w) = pipe();
        let (_err, err_w) = pipe();
        let argv = ["true".to_string()];
        let e = spawn(MainProcess {
            program: Path::new("/bin/true"),
            argv: &argv,
            env: &[],
            setup: setup("/nonexistent/dir"),
            stdin: None,
            stdout: out_w,
            stderr: err_w,
        })
        .err()
        .expect("chdir must fail");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        // No child of ours is left, not even a zombie.
        assert_eq!(
            nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
            Err(nix::errno::Errno::ECHILD)
        );
    }
}
