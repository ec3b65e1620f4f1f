//! Creating a container's main process: `clone3` straight into its cgroup v2 group, or
//! `std::process` with a `pre_exec` hook where the kernel has no `clone3`. What the child does
//! before exec is [`crate::spawn::setup_child`].

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::spawn::{MainProcess, Spawned, setup_child};

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

    use crate::spawn::{ChildSetup, Spawned, setup_child};

    const CLONE_VM: u64 = libc::CLONE_VM as u64;
    const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
    const CLONE_PIDFD: u64 = libc::CLONE_PIDFD as u64;
    /// Not taken from libc, which declares it as a C `int` (it does not fit one).
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    /// The child's stack when it shares the node's memory (it runs the mount plan and little
    /// else before it execs).
    const STACK_SIZE: usize = 256 * 1024;

    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
    type CloneArgs = libc::clone_args;

    /// What the child needs, all made before the clone.
    struct ChildArgs<'a> {
        setup: &'a ChildSetup,
        in_group: bool,
        shares_memory: bool,
        stdio: [i32; 3],
        path: &'a CString,
        argv: &'a [*const c_char],
        envp: &'a [*const c_char],
        err_w: i32,
    }

    fn cstring(s: &[u8]) -> io::Result<CString> {
        CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
    }

    /// A stack for a child that shares our memory, unmapped on drop.
    struct Stack(*mut c_void);

    impl Stack {
        fn new() -> io::Result<Stack> {
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
    }

    impl Drop for Stack {
        fn drop(&mut self) {
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
        let mut flags = CLONE_PIDFD;
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
            shares_memory: stack.is_some(),
            stdio: [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
            path: &path,
            argv: &argv_ptrs,
            envp: &envp_ptrs,
            err_w: err_w.as_raw_fd(),
        };

        // No signal handler may run in a child that shares our memory: everything is blocked
        // around the clone (the child sets handlers to default before it unblocks).
        // SAFETY: sigset manipulation on local values.
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: fills a local set and blocks it in this thread, keeping the old mask.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old_mask);
        }
        // SAFETY: see `raw_clone3`; `child_args` and everything it points to outlive the child's
        // use of them (with CLONE_VFORK this thread waits until the child has exec'd or exited;
        // without CLONE_VM the child has its own copy).
        let ret = unsafe { raw_clone3(&clone_args, std::ptr::from_ref(&child_args).cast_mut().cast()) };
        // SAFETY: restores this thread's own mask.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
        }
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
        let entry: extern "C" fn(*mut c_void) -> ! = child_entry;
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

    /// In the child: default signal handlers (when sharing memory) and mask, default SIGPIPE,
    /// stdio, the setup, then exec. Returns the errno of what failed (it only returns on
    /// failure).
    ///
    /// # Safety
    /// Only in a child just created by `clone3`, before exec; the pointers in `args` must be
    /// valid (prepared by `spawn` before the clone).
    unsafe fn child(args: &ChildArgs<'_>) -> i32 {
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        // SAFETY: plain system calls on local data and fds that are open in the child.
        unsafe {
            if args.shares_memory {
                // A handler of the node's must never run here, on the node's memory.
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

    /// The tests wait for "any child": one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn pipe() -> (fs::File, OwnedFd) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (fs::File::from(r), w)
    }

    #[test]
    fn the_child_gets_default_signals_stdio_a_session_and_the_directory() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let (mut out, out_w) = pipe();
        let (_err, err_w) = pipe();
        let argv = [
            "sh",
            "-c",
            "grep -E '^(SigIgn|SigBlk)' /proc/self/status; pwd; echo $FOO; ps -o sid= -p $$",
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
        assert_eq!(lines[2], "/tmp");
        assert_eq!(lines[3], "bar");
        assert_eq!(
            lines[4],
            spawned.pid.to_string(),
            "the process leads its own session"
        );
    }

    #[test]
    fn a_failure_before_exec_is_returned_and_the_child_reaped() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
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
