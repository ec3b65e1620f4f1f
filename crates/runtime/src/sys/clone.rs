//! Creating a container's main process: `clone3` straight into its cgroup v2 group, or
//! `std::process` with a `pre_exec` hook where the kernel has no `clone3`. What the child does
//! before exec is [`crate::spawn::setup_child`].

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::spawn::{MainProcess, MonitorLaunch, Monitored, Spawned, setup_child};

pub(super) use clone3::{reset_handlers, vfork};

/// Spawns the container's main process as the child of its monitor: a process cloned from
/// here that shares our memory until it execs (`CLONE_VM | CLONE_VFORK`), creates the main
/// process exactly as [`spawn`] does (`clone3` into its cgroup), becomes a child subreaper in a
/// session of its own and then execs the monitor program with the output's reading ends.
/// `Ok(None)` where this is not available (no `clone3` with a stack here, or no cgroup v2
/// `clone3` in the kernel): the caller starts the process itself.
pub(crate) fn spawn_monitored(p: &MainProcess<'_>, m: MonitorLaunch<'_>) -> io::Result<Option<Monitored>> {
    if !cfg!(target_arch = "x86_64") {
        return Ok(None);
    }
    let devnull;
    let stdin = match &p.stdin {
        Some(fd) => fd,
        None => {
            devnull = OwnedFd::from(std::fs::File::open("/dev/null")?);
            &devnull
        }
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
/// `pre_exec` hook. Exec probes use posix_spawn instead (see `exec`).
pub(crate) fn spawn(p: MainProcess<'_>) -> io::Result<Spawned> {
    let MainProcess {
        program,
        argv,
        env,
        setup,
        stdin,
        stdout,
        stderr,
    } = p;
    let stdin = match stdin {
        Some(fd) => fd,
        None => OwnedFd::from(std::fs::File::open("/dev/null")?),
    };
    if let Some(spawned) = clone3::spawn(program, argv, env, &setup, [&stdin, &stdout, &stderr])? {
        return Ok(spawned);
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

/// The `clone3` path: the child is created inside the cgroup v2 group and handed back with a
/// pidfd; exec failures come back through a close-on-exec pipe. On x86_64 it shares the
/// node's memory until it execs (`CLONE_VM | CLONE_VFORK`, as posix_spawn does): no page
/// tables are copied, and the node does not take copy-on-write faults afterwards (each one a
/// TLB shootdown across the node's threads). Elsewhere it is fork-like.
mod clone3 {
    use std::ffi::{CString, c_char, c_void};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::path::Path;

    use crate::spawn::{ChildSetup, MonitorLaunch, Monitored, Spawned, setup_child};

    const CLONE_VM: u64 = libc::CLONE_VM as u64;
    const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
    const CLONE_PIDFD: u64 = libc::CLONE_PIDFD as u64;
    /// Not taken from libc, which declares it as a C `int` (it does not fit one).
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    /// The child starts with every handled signal back to its default (ignored ones stay
    /// ignored), as [`reset_handlers`] makes it, without its 64 system calls (Linux 5.5, older
    /// than `CLONE_INTO_CGROUP`). Declared as a C `int` in libc, like the one above.
    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
    /// The child's stack when it shares the node's memory (it runs the mount plan and little
    /// else before it execs).
    const STACK_SIZE: usize = 256 * 1024;

    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
    type CloneArgs = libc::clone_args;

    /// What the child needs, all made before the clone.
    #[derive(Clone, Copy)]
    struct ChildArgs<'a> {
        setup: &'a ChildSetup,
        in_group: bool,
        stdio: [i32; 3],
        path: &'a CString,
        argv: &'a [*const c_char],
        envp: &'a [*const c_char],
        err_w: i32,
        /// The CPU the node thread that spawns it ran on, which the child leaves for
        /// `move_to` before its exec ([`move_cpu`]); -1 for none.
        move_from: i32,
        /// The CPU the monitor ran on before it cloned the child (and then waited for it).
        move_to: i32,
    }

    fn cstring(s: &[u8]) -> io::Result<CString> {
        CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
    }

    /// Runs `clone` with every signal blocked in this thread: no signal handler may run in a
    /// child that shares our memory (the child sets handlers to default before it unblocks).
    fn signals_blocked<T>(clone: impl FnOnce() -> T) -> T {
        // SAFETY: an all-zero sigset_t is a valid (empty) set.
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: fills a local set and blocks it in this thread, keeping the old mask.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old_mask);
        }
        let out = clone();
        // SAFETY: restores this thread's own mask.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
        }
        out
    }

    /// A stack for a child that shares our memory. Dropped (once its child has exec'd or
    /// exited), it goes back to [`SPARE_STACKS`] when there is room, else it is unmapped.
    struct Stack(*mut c_void);

    // SAFETY: the mapping is this value's alone; whichever thread holds it may use or unmap it.
    unsafe impl Send for Stack {}

    /// How many stacks are kept for the next spawns.
    const SPARE_MAX: usize = 4;

    /// Stacks whose children have exec'd or exited, for the next spawns: a new mapping costs
    /// each spawn the page faults of the child's first touches, and its unmapping a flush of
    /// the TLB of every core the child ran on with our memory (a container's restart maps and
    /// unmaps two). What a stack's last child wrote there is never read again: the next child
    /// starts at its top, as a fresh one.
    static SPARE_STACKS: std::sync::Mutex<Vec<Stack>> = std::sync::Mutex::new(Vec::new());

    fn spare_stacks() -> std::sync::MutexGuard<'static, Vec<Stack>> {
        SPARE_STACKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    impl Stack {
        /// A spare stack, or a new one.
        fn new() -> io::Result<Stack> {
            if let Some(stack) = spare_stacks().pop() {
                return Ok(stack);
            }
            Stack::map()
        }

        fn map() -> io::Result<Stack> {
            // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    STACK_SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                    -1,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Stack(ptr))
        }

        /// `clone3`'s arguments for a child with `flags` on this stack (SIGCHLD at its end).
        fn clone_args(&self, flags: u64) -> CloneArgs {
            CloneArgs {
                flags,
                pidfd: 0,
                child_tid: 0,
                parent_tid: 0,
                exit_signal: libc::SIGCHLD as u64,
                stack: self.0 as u64,
                stack_size: STACK_SIZE as u64,
                tls: 0,
                set_tid: 0,
                set_tid_size: 0,
                cgroup: 0,
            }
        }
    }

    impl Drop for Stack {
        fn drop(&mut self) {
            let mut spare = spare_stacks();
            if spare.len() < SPARE_MAX {
                // The mapping moves to the new value, which owns it from here.
                spare.push(Stack(std::mem::replace(&mut self.0, std::ptr::null_mut())));
                return;
            }
            drop(spare);
            // SAFETY: our own mapping, no longer used (the child has exec'd or exited).
            unsafe {
                libc::munmap(self.0, STACK_SIZE);
            }
        }
    }

    /// `Ok(None)` when this kernel has no `clone3` with `CLONE_INTO_CGROUP`/`CLONE_PIDFD`.
    pub(super) fn spawn(
        program: &Path,
        argv: &[String],
        env: &[(String, String)],
        setup: &ChildSetup,
        [stdin, stdout, stderr]: [&OwnedFd; 3],
    ) -> io::Result<Option<Spawned>> {
        // Everything the child touches is made here, before the clone.
        let path = cstring(program.as_os_str().as_encoded_bytes())?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
            .collect::<io::Result<_>>()?;
        let argv_ptrs: Vec<*const c_char> = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp_ptrs: Vec<*const c_char> = envp
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let stack = if cfg!(target_arch = "x86_64") {
            Some(Stack::new()?)
        } else {
            None
        };

        let mut pidfd: libc::c_int = -1;
        let in_group = setup.cgroups.v2_dir.as_ref().map(AsRawFd::as_raw_fd);
        let mut flags = CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
        if in_group.is_some() {
            flags |= CLONE_INTO_CGROUP;
        }
        if stack.is_some() {
            flags |= CLONE_VM | CLONE_VFORK;
        }
        let clone_args = CloneArgs {
            flags,
            pidfd: std::ptr::from_mut(&mut pidfd) as u64,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_ref().map_or(0, |s| s.0 as u64),
            stack_size: if stack.is_some() { STACK_SIZE as u64 } else { 0 },
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: in_group.map_or(0, |fd| fd as u64),
        };
        let child_args = ChildArgs {
            setup,
            in_group: in_group.is_some(),
            stdio: [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
            path: &path,
            argv: &argv_ptrs,
            envp: &envp_ptrs,
            err_w: err_w.as_raw_fd(),
            // This thread runs when the clone is made, so the child goes elsewhere if it can.
            move_from: -1,
            move_to: -1,
        };

        // SAFETY: see `raw_clone3`; `child_args` and everything it points to outlive the child's
        // use of them (with CLONE_VFORK this thread waits until the child has exec'd or exited;
        // without CLONE_VM the child has its own copy).
        let ret = signals_blocked(|| unsafe {
            raw_clone3(&clone_args, std::ptr::from_ref(&child_args).cast_mut().cast())
        });
        drop(stack);
        if ret < 0 {
            return match i32::try_from(-ret).unwrap_or(libc::EINVAL) {
                // No clone3 (before 5.3), no CLONE_INTO_CGROUP (before 5.7), or refused in a
                // sandbox: the caller falls back to fork.
                libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        drop(err_w);
        let pid = i32::try_from(ret).map_err(|_| io::Error::other("clone3 returned a bad pid"))?;
        // SAFETY: the kernel wrote a new pidfd there (CLONE_PIDFD) and nothing else owns it.
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < buf.len() {
            match nix::unistd::read(err_r.as_raw_fd(), &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got == 0 {
            // The pipe closed on exec: the program runs.
            return Ok(Some(Spawned { pid, pidfd }));
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        Err(io::Error::from_raw_os_error(i32::from_ne_bytes(buf)))
    }

    /// `clone3(args)`; the child runs `child_entry(arg)` (on its own stack when `args` gives
    /// one) and never returns here. Returns the child's pid or `-errno`.
    ///
    /// # Safety
    /// `arg` must point to a live `ChildArgs`; a stack in `args` must be a mapping of at least
    /// `stack_size` bytes that stays mapped until the child has exec'd or exited.
    #[cfg(target_arch = "x86_64")]
    unsafe fn raw_clone3(args: &CloneArgs, arg: *mut c_void) -> i64 {
        // SAFETY: the caller's contract.
        unsafe { raw_clone3_with(args, arg, child_entry) }
    }

    /// [`raw_clone3`] with the entry function the child runs.
    ///
    /// # Safety
    /// As [`raw_clone3`]; `args` must give a stack (the child runs `entry` on it).
    #[cfg(target_arch = "x86_64")]
    unsafe fn raw_clone3_with(
        args: &CloneArgs,
        arg: *mut c_void,
        entry: extern "C" fn(*mut c_void) -> !,
    ) -> i64 {
        let ret: i64;
        // SAFETY: the caller's contract. In the parent the syscall returns the pid; in the
        // child (rax 0) r12/r13 still hold `arg` and `entry`, and the stack pointer is the top
        // of the new stack (16-byte aligned, as `call` expects), which `entry` never leaves.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => ret,
                in("rdi") std::ptr::from_ref(args),
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") arg,
                in("r13") entry,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        ret
    }

    /// The fork-like `clone3` (no stack in `args`): the child continues here with a copy of
    /// our memory.
    ///
    /// # Safety
    /// `arg` must point to a live `ChildArgs`, and `args` must give no stack.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn raw_clone3(args: &CloneArgs, arg: *mut c_void) -> i64 {
        // SAFETY: without CLONE_VM and a stack this is fork: the child returns here.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                std::ptr::from_ref(args),
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if ret == 0 {
            child_entry(arg);
        }
        if ret < 0 {
            -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
        } else {
            ret
        }
    }

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
    }

    /// The fd the executable gets in the monitor before its exec (close-on-exec).
    const EXE_FD: i32 = 9;

    pub(super) fn spawn_monitored(
        program: &Path,
        argv: &[String],
        env: &[(String, String)],
        setup: &ChildSetup,
        [stdin, stdout, stderr]: [&OwnedFd; 3],
        m: MonitorLaunch<'_>,
    ) -> io::Result<Option<Monitored>> {
        let path = cstring(program.as_os_str().as_encoded_bytes())?;
        let c_argv: Vec<CString> = argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let c_envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
            .collect::<io::Result<_>>()?;
        let ptrs = |v: &[CString]| -> Vec<*const c_char> {
            v.iter()
                .map(|a| a.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let argv_ptrs = ptrs(&c_argv);
        let envp_ptrs = ptrs(&c_envp);
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
        let mut monitor_argv_ptrs = ptrs(&monitor_argv);
        monitor_argv_ptrs[2] = pid_slot.as_ptr().cast();
        let monitor_envp: Vec<*const c_char> = vec![std::ptr::null()];
        let devnull = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")?;

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
        let monitor_args = MonitorArgs {
            child: ChildArgs {
                setup,
                in_group: in_group.is_some(),
                stdio: [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
                path: &path,
                argv: &argv_ptrs,
                envp: &envp_ptrs,
                // The monitor makes the error pipe in its own descriptor table: a writing end
                // left in ours would keep its read from ever seeing the end of a good exec.
                err_w: -1,
                // SAFETY: no arguments; -1 on failure, which the child takes as nothing to do.
                move_from: unsafe { libc::sched_getcpu() },
                move_to: -1,
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
        };
        let mut monitor_pidfd: libc::c_int = -1;
        let monitor_clone = CloneArgs {
            pidfd: std::ptr::from_mut(&mut monitor_pidfd) as u64,
            ..monitor_stack.clone_args(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_CLEAR_SIGHAND)
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
        let monitor_pidfd = (monitor_pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(monitor_pidfd) });
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
                pidfd: super::super::pidfd_open(main_pid).ok(),
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

    /// Runs `entry(arg)` in a new process that shares our memory until it execs or exits
    /// (`CLONE_VM | CLONE_VFORK`, as posix_spawn does): no page tables are copied, and the node
    /// takes no copy-on-write faults afterwards. This thread waits until the child has exec'd
    /// or exited, with every signal blocked. Returns the child's pid (its exit signal is
    /// SIGCHLD), or `Ok(None)` where this is not available (no `clone3` with a stack here or in
    /// the kernel): the caller forks instead.
    ///
    /// # Safety
    /// `entry` must call [`reset_handlers`] before it unblocks any signal, touch only its own
    /// stack and what `arg` points to (which must outlive the call), make only
    /// async-signal-safe system calls, and end in exec or `_exit`, never returning.
    #[cfg(target_arch = "x86_64")]
    pub(crate) unsafe fn vfork(
        entry: extern "C" fn(*mut c_void) -> !,
        arg: *mut c_void,
    ) -> io::Result<Option<i32>> {
        let stack = Stack::new()?;
        let clone_args = stack.clone_args(CLONE_VM | CLONE_VFORK);
        // SAFETY: the stack is a mapping of STACK_SIZE that outlives the child's use of it
        // (CLONE_VFORK: this thread waits until the child has exec'd or exited); the caller
        // vouches for `entry` and `arg`.
        let ret = signals_blocked(|| unsafe { raw_clone3_with(&clone_args, arg, entry) });
        drop(stack);
        if ret < 0 {
            return match i32::try_from(-ret).unwrap_or(libc::EINVAL) {
                libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        i32::try_from(ret)
            .map(Some)
            .map_err(|_| io::Error::other("clone3 returned a bad pid"))
    }

    /// Not available here: the caller forks.
    ///
    /// # Safety
    /// None: nothing is run.
    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) unsafe fn vfork(
        _: extern "C" fn(*mut c_void) -> !,
        _: *mut c_void,
    ) -> io::Result<Option<i32>> {
        Ok(None)
    }

    /// Sets every signal with a handler back to its default (a handler of the node's must
    /// never run in a child on the node's memory).
    ///
    /// # Safety
    /// Only in a child that shares the node's memory, before its exec.
    pub(crate) unsafe fn reset_handlers() {
        // SAFETY: sigaction queries and resets on the process's own dispositions.
        unsafe {
            for sig in 1..=libc::SIGRTMAX() {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != libc::SIG_IGN
                {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
        }
    }

    /// Moves the calling process off CPU `from` when it runs there: to CPU `to` when that is
    /// another one its affinity allows, else to any other it allows. Then gives it back the
    /// affinity it had: the scheduler keeps it where it moved, and the program it executes
    /// inherits the mask unchanged. Returns 0 or the errno of a failed restore.
    ///
    /// Why: the node thread that spawns a container waits (`CLONE_VFORK`) until the monitor
    /// and the container have executed their programs, so its CPU looks idle and the container
    /// is often put there; woken on that CPU, the node thread then waited behind the new
    /// program's start-up (0.4-0.7 ms of a C library's on the development machine) while the
    /// other CPU stood idle, and the start was reported that much later. `to` is the monitor's
    /// CPU, idle while the monitor waits for this exec (a move to a busy CPU waits for it);
    /// where the monitor shares the node thread's CPU, the kernel picks one.
    ///
    /// # Safety
    /// Plain system calls on local data; callable between clone and exec.
    pub(super) unsafe fn move_cpu(from: i32, to: i32) -> i32 {
        let Ok(from) = usize::try_from(from) else {
            return 0;
        };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: sched_getcpu takes nothing; an all-zero cpu_set_t is a valid (empty) set;
        // the calls fill or read the local sets of `size` bytes.
        unsafe {
            if usize::try_from(libc::sched_getcpu()) != Ok(from) || from >= 8 * size {
                return 0;
            }
            let mut had: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut had) != 0 {
                return 0;
            }
            let mut there: libc::cpu_set_t = std::mem::zeroed();
            match usize::try_from(to) {
                Ok(to) if to != from && to < 8 * size && libc::CPU_ISSET(to, &had) => {
                    libc::CPU_SET(to, &mut there);
                }
                _ => {
                    there = had;
                    libc::CPU_CLR(from, &mut there);
                    if libc::CPU_COUNT(&there) == 0 {
                        return 0;
                    }
                }
            }
            if libc::sched_setaffinity(0, size, &there) != 0 {
                return 0;
            }
            if libc::sched_setaffinity(0, size, &had) != 0 {
                return io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            }
        }
        0
    }

    extern "C" fn child_entry(arg: *mut c_void) -> ! {
        // SAFETY: `arg` is the parent's `ChildArgs` (shared or copied memory, see `spawn`).
        let args = unsafe { &*arg.cast::<ChildArgs<'_>>() };
        // SAFETY: in the child between clone and exec; see `child`.
        let errno = unsafe { child(args) };
        let bytes = errno.to_ne_bytes();
        // SAFETY: writing a local buffer to the error pipe, then leaving without running any
        // destructor or exit handler (they would run on the parent's memory).
        unsafe {
            libc::write(args.err_w, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }

    /// In the child (its handlers already the defaults): the signal mask, default SIGPIPE,
    /// stdio, the setup, off the spawning thread's CPU, then exec. Returns the errno of what failed (it only returns on
    /// failure).
    ///
    /// # Safety
    /// Only in a child just created by `clone3`, before exec; the pointers in `args` must be
    /// valid (prepared by `spawn` before the clone).
    unsafe fn child(args: &ChildArgs<'_>) -> i32 {
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        // SAFETY: plain system calls on local data and fds that are open in the child.
        unsafe {
            // No handler of the node's can run here, on the node's memory: the clone reset them
            // (CLONE_CLEAR_SIGHAND).
            // Rust ignores SIGPIPE; a program expects the default.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return errno();
            }
            for (target, fd) in args.stdio.into_iter().enumerate() {
                let target = target as i32;
                let ok = if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(fd, target) == target
                };
                if !ok {
                    return errno();
                }
            }
        }
        if let Err(e) = setup_child(args.setup, args.in_group) {
            return e.raw_os_error().unwrap_or(libc::EIO);
        }
        // SAFETY: system calls only, between clone and exec.
        let moved = unsafe { move_cpu(args.move_from, args.move_to) };
        if moved != 0 {
            return moved;
        }
        // SAFETY: null-terminated arrays of pointers into CStrings that outlive this call.
        unsafe {
            libc::execve(args.path.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr());
        }
        errno()
    }
}

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
