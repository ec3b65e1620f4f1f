//! The monitored spawn: a child on the node's memory that clones the container's main
//! process, waits for its exec, and then execs the monitor program.

use super::*;

/// Where the monitor says how its start went (it shares our memory until it execs).
#[derive(Default)]
struct Report {
    /// The main process's pid, once cloned.
    main_pid: i32,
    /// 0, or the errno of the step that failed.
    errno: i32,
    /// The step: 0 the main process's own set-up or exec, 1 its clone, 2 the monitor's exec.
    step: i32,
}

/// What the monitor's pre-exec part needs, all made before its clone.
struct MonitorArgs<'a> {
    child: ChildArgs<'a>,
    child_clone: CloneArgs,
    /// (fd, number it gets in the monitor); the executable's is close-on-exec.
    fds: [(i32, i32); 4],
    n_fds: usize,
    devnull: i32,
    exe: i32,
    argv: &'a [*const c_char],
    envp: &'a [*const c_char],
    /// `argv[2]`: the main process's pid, written in decimal by the monitor.
    pid_slot: *mut u8,
    report: *mut Report,
    /// One above the highest descriptor of ours that the monitor or the main process uses:
    /// the monitor, cloned on our table, keeps only those below it (`own_fds`).
    boundary: i32,
}

/// The fd the executable gets in the monitor before its exec (close-on-exec).
const EXE_FD: i32 = 9;

pub(in crate::sys::clone) fn spawn_monitored(
    program: &Path,
    argv: &[String],
    env: &[(String, String)],
    setup: &ChildSetup,
    [stdin, stdout, stderr]: [&OwnedFd; 3],
    m: MonitorLaunch<'_>,
) -> io::Result<Option<Monitored>> {
    let exec = ExecStrings::new(program, argv, env)?;
    // The monitor's own command line; the pid goes into a slot filled after the clone.
    let mut pid_slot = [0u8; 16];
    let streams = if m.stderr.is_some() { "2" } else { "1" };
    let monitor_argv: Vec<CString> = [
        "podvisor-monitor".as_bytes(),
        b"1",
        b"0",
        m.log.as_os_str().as_encoded_bytes(),
        m.max_bytes.to_string().as_bytes(),
        m.max_files.to_string().as_bytes(),
        m.exit.as_os_str().as_encoded_bytes(),
        streams.as_bytes(),
    ]
    .iter()
    .map(|a| cstring(a))
    .collect::<io::Result<_>>()?;
    let mut monitor_argv_ptrs = null_terminated(&monitor_argv);
    monitor_argv_ptrs[2] = pid_slot.as_ptr().cast();
    let monitor_envp: Vec<*const c_char> = vec![std::ptr::null()];
    let devnull = crate::sys::dev_null()?;

    let child_stack = Stack::new()?;
    let monitor_stack = Stack::new()?;
    let in_group = setup.cgroups.v2_dir.as_ref().map(AsRawFd::as_raw_fd);
    let mut child_flags = CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND;
    if in_group.is_some() {
        child_flags |= CLONE_INTO_CGROUP;
    }
    let child_clone = CloneArgs {
        cgroup: in_group.map_or(0, |fd| fd as u64),
        ..child_stack.clone_args(child_flags)
    };
    let mut fds = [(-1, -1); 4];
    let mut n_fds = 0;
    for (fd, target) in [
        (Some(m.stdout.as_raw_fd()), 3),
        (m.stderr.map(AsRawFd::as_raw_fd), 4),
        (m.keep.map(AsRawFd::as_raw_fd), 5),
    ] {
        if let Some(fd) = fd {
            fds[n_fds] = (fd, target);
            n_fds += 1;
        }
    }
    let mut report = Report::default();
    let used = [
        stdin.as_raw_fd(),
        stdout.as_raw_fd(),
        stderr.as_raw_fd(),
        devnull.as_raw_fd(),
        m.program.raw_fd(),
        setup.max_fd(),
    ];
    let boundary = 1 + used
        .into_iter()
        .chain(fds.iter().map(|(fd, _)| *fd))
        .max()
        .unwrap_or(2);
    let monitor_args = MonitorArgs {
        child: ChildArgs {
            // SAFETY: no arguments; -1 on failure, which the child takes as nothing to do.
            move_from: unsafe { libc::sched_getcpu() },
            // The monitor makes the error pipe in its own descriptor table (-1 here): a
            // writing end left in ours would keep its read from ever seeing the end of a good
            // exec.
            ..ChildArgs::new(
                setup,
                in_group.is_some(),
                [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
                &exec,
                -1,
            )
        },
        child_clone,
        fds,
        n_fds,
        devnull: devnull.as_raw_fd(),
        exe: m.program.raw_fd(),
        argv: &monitor_argv_ptrs,
        envp: &monitor_envp,
        pid_slot: pid_slot.as_mut_ptr(),
        report: std::ptr::from_mut(&mut report),
        boundary,
    };
    let mut monitor_pidfd: libc::c_int = -1;
    let monitor_clone = CloneArgs {
        pidfd: std::ptr::from_mut(&mut monitor_pidfd) as u64,
        ..monitor_stack.clone_args(CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | CLONE_CLEAR_SIGHAND)
    };
    let _owned = crate::process::owned();
    // SAFETY: see `raw_clone3_with`; `monitor_args` and all it points to live on this
    // frame, and with CLONE_VFORK this thread waits until the monitor has exec'd or exited
    // (and the monitor, in turn, until the main process has).
    let ret = signals_blocked(|| unsafe {
        raw_clone3_with(
            &monitor_clone,
            std::ptr::from_ref(&monitor_args).cast_mut().cast(),
            monitor_entry,
        )
    });
    drop(child_stack);
    drop(monitor_stack);
    if ret < 0 {
        return match i32::try_from(-ret).unwrap_or(libc::EINVAL) {
            libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    let monitor_pid = i32::try_from(ret).map_err(|_| io::Error::other("clone3 returned a bad pid"))?;
    // SAFETY: the kernel wrote a new pidfd there (CLONE_PIDFD) and nothing else owns it.
    let monitor_pidfd =
        (monitor_pidfd >= 0).then(|| crate::sys::park(unsafe { OwnedFd::from_raw_fd(monitor_pidfd) }));
    if report.errno != 0 {
        // It exited without exec'ing the monitor (and reaped the main process if there
        // was one).
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(monitor_pid), None);
        let e = io::Error::from_raw_os_error(report.errno);
        return Err(match report.step {
            0 => e,
            1 => io::Error::new(
                e.kind(),
                format!("cloning the main process under its monitor: {e}"),
            ),
            _ => io::Error::new(e.kind(), format!("starting the container monitor: {e}")),
        });
    }
    let mut owned = _owned;
    owned.insert(monitor_pid);
    drop(owned);
    let main_pid = report.main_pid;
    Ok(Some(Monitored {
        main: Spawned {
            pid: main_pid,
            pidfd: crate::sys::pidfd_open(main_pid).ok(),
        },
        monitor: Spawned {
            pid: monitor_pid,
            pidfd: monitor_pidfd,
        },
    }))
}

/// The monitor between its clone and its exec (sharing our memory, on its own stack):
/// default signal handlers, its own session, child subreaper, the main process cloned and
/// waited for until it exec'd, then its descriptors and the monitor's exec.
extern "C" fn monitor_entry(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the parent's `MonitorArgs` (shared memory, see `spawn_monitored`).
    let args = unsafe { &*arg.cast::<MonitorArgs<'_>>() };
    // SAFETY: only system calls on data prepared before the clone; see `monitor_steps`.
    unsafe {
        let (step, errno) = monitor_steps(args);
        (*args.report).step = step;
        (*args.report).errno = errno;
        libc::_exit(1)
    }
}

/// Returns the failed step and its errno (it only returns on failure).
///
/// # Safety
/// Only in the monitor's clone, before its exec; the pointers in `args` must be valid.
unsafe fn monitor_steps(args: &MonitorArgs<'_>) -> (i32, i32) {
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain system calls on local data and inherited fds; the shared memory is
    // written only through `args.report` and `args.pid_slot`, which the parent reads
    // after we exec'd or exited.
    // Its signal handlers are the defaults (CLONE_CLEAR_SIGHAND).
    unsafe {
        // Off the node's descriptor table (CLONE_FILES) before any descriptor is touched.
        let e = own_fds(args.boundary);
        if e != 0 {
            return (2, e);
        }
        if libc::setsid() < 0 {
            return (2, errno());
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return (2, errno());
        }
        let mut pipe = [-1i32; 2];
        if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return (1, errno());
        }
        let [err_r, err_w] = pipe;
        let mut child = args.child;
        child.err_w = err_w;
        // Where this process waits for the child's exec: its CPU is about to be idle.
        child.move_to = libc::sched_getcpu();
        // SAFETY (of the pointer): `child` lives on this stack until the main process has
        // exec'd or exited (CLONE_VFORK suspends us until then).
        let ret = raw_clone3_with(
            &args.child_clone,
            std::ptr::from_ref(&child).cast_mut().cast(),
            child_entry,
        );
        if ret < 0 {
            return (1, i32::try_from(-ret).unwrap_or(libc::EIO));
        }
        let pid = ret as i32;
        // The main process has exec'd or failed: its error pipe says which.
        libc::close(err_w);
        let mut buf = [0u8; 4];
        let mut got = 0usize;
        while got < 4 {
            let n = libc::read(err_r, buf.as_mut_ptr().add(got).cast(), 4 - got);
            if n > 0 {
                got += n as usize;
            } else if n == 0 || *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        if got > 0 {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            return (0, i32::from_ne_bytes(buf));
        }
        (*args.report).main_pid = pid;
        // The pid in decimal, into argv[2].
        let mut digits = [0u8; 12];
        let mut n = 0;
        let mut v = pid.unsigned_abs();
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for i in 0..n {
            *args.pid_slot.add(i) = digits[n - 1 - i];
        }
        *args.pid_slot.add(n) = 0;
        let fail = |e: i32| -> (i32, i32) {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            (2, e)
        };
        // Out of the way of the numbers they get first, then into place.
        let fds = &args.fds[..args.n_fds];
        let mut moved = [-1i32; 4];
        for (slot, (fd, _)) in moved.iter_mut().zip(fds) {
            *slot = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 16);
            if *slot < 0 {
                return fail(errno());
            }
        }
        let exe = libc::fcntl(args.exe, libc::F_DUPFD_CLOEXEC, 16);
        if exe < 0 || libc::dup3(exe, EXE_FD, libc::O_CLOEXEC) != EXE_FD {
            return fail(errno());
        }
        for (from, (_, target)) in moved.iter().zip(fds) {
            if libc::dup2(*from, *target) != *target {
                return fail(errno());
            }
        }
        for fd in 0..3 {
            if libc::dup2(args.devnull, fd) != fd {
                return fail(errno());
            }
        }
        // Everything else of the node's is closed (close-on-exec or not).
        let mut open = [false; 10];
        open[EXE_FD as usize] = true;
        for (_, target) in fds {
            open[*target as usize] = true;
        }
        for (fd, keep) in open.iter().enumerate().skip(3) {
            if !keep {
                libc::close(fd as i32);
            }
        }
        if libc::syscall(libc::SYS_close_range, 10u32, u32::MAX, 0u32) != 0 {
            return fail(errno());
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::syscall(
            libc::SYS_execveat,
            EXE_FD,
            c"".as_ptr(),
            args.argv.as_ptr(),
            args.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        fail(errno())
    }
}
