//! The `clone3` path: the child is created inside the cgroup v2 group and handed back with a
//! pidfd; exec failures come back through a close-on-exec pipe. On x86_64 it shares the
//! node's memory until it execs (`CLONE_VM | CLONE_VFORK`, as posix_spawn does): no page
//! tables are copied, and the node does not take copy-on-write faults afterwards (each one a
//! TLB shootdown across the node's threads). It shares the node's descriptor table too
//! (`CLONE_FILES`) until, first thing, it takes a table of its own with the descriptors below
//! the highest it uses ([`own_fds`]): the node keeps its long-lived ones above those
//! ([`crate::sys::park`]), so the child neither copies them nor closes them at its exec.
//! Elsewhere it is fork-like.

use std::ffi::{CString, c_char, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::spawn::{ChildSetup, MonitorLaunch, Monitored, Spawned, setup_child};

mod monitored;
mod stack;

pub(super) use monitored::spawn_monitored;
use stack::Stack;

const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
const CLONE_PIDFD: u64 = libc::CLONE_PIDFD as u64;
const CLONE_FILES: u64 = libc::CLONE_FILES as u64;
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
    /// For a child cloned on our descriptor table (`CLONE_FILES`), one above the highest
    /// descriptor it uses ([`own_fds`]); 0 for one with a table of its own.
    boundary: i32,
}

impl<'a> ChildArgs<'a> {
    /// What both spawns give the child alike, with no CPU move.
    fn new(
        setup: &'a ChildSetup,
        in_group: bool,
        stdio: [i32; 3],
        exec: &'a ExecStrings,
        err_w: i32,
    ) -> ChildArgs<'a> {
        ChildArgs {
            setup,
            in_group,
            stdio,
            path: &exec.path,
            argv: &exec.argv,
            envp: &exec.envp,
            err_w,
            move_from: -1,
            move_to: -1,
            boundary: 0,
        }
    }
}

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
}

/// The NUL-terminated array of pointers to `strings` that `execve` takes.
fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A program's path, arguments and environment as `execve` takes them, made before the clone.
/// The pointer arrays point into the strings' own buffers, which moving this value does not
/// move.
struct ExecStrings {
    path: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    _strings: [Vec<CString>; 2],
}

impl ExecStrings {
    fn new(program: &Path, argv: &[String], env: &[(String, String)]) -> io::Result<ExecStrings> {
        let path = cstring(program.as_os_str().as_encoded_bytes())?;
        let args: Vec<CString> = argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let vars: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
            .collect::<io::Result<_>>()?;
        Ok(ExecStrings {
            path,
            argv: null_terminated(&args),
            envp: null_terminated(&vars),
            _strings: [args, vars],
        })
    }
}

/// Gives a child cloned with `CLONE_FILES` (sharing the node's descriptor table) a table of
/// its own holding the node's descriptors below `boundary` only: those above are neither
/// copied nor, at its exec, closed one by one (see [`crate::sys::park`]). With `close_range`'s
/// `CLOSE_RANGE_UNSHARE` (Linux 5.9), else a copy of the whole table (`unshare`). Returns 0 or
/// the errno. Called first in such a child, before it opens, moves or closes a descriptor.
pub(in crate::sys) fn own_fds(boundary: i32) -> i32 {
    let from = boundary.max(3).unsigned_abs();
    // SAFETY: close_range and unshare take integers only; they change this process's own
    // descriptor table, which the node no longer sees once it is unshared.
    unsafe {
        if libc::syscall(libc::SYS_close_range, from, u32::MAX, libc::CLOSE_RANGE_UNSHARE) == 0 {
            return 0;
        }
        if libc::unshare(libc::CLONE_FILES) == 0 {
            return 0;
        }
    }
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
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

/// `Ok(None)` when this kernel has no `clone3` with `CLONE_INTO_CGROUP`/`CLONE_PIDFD`.
pub(super) fn spawn(
    program: &Path,
    argv: &[String],
    env: &[(String, String)],
    setup: &ChildSetup,
    [stdin, stdout, stderr]: [&OwnedFd; 3],
) -> io::Result<Option<Spawned>> {
    // Everything the child touches is made here, before the clone.
    let exec = ExecStrings::new(program, argv, env)?;
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
        flags |= CLONE_VM | CLONE_VFORK | CLONE_FILES;
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
    // This thread runs when the clone is made, so the child goes elsewhere if it can: no move.
    let stdio = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    let child_args = ChildArgs {
        boundary: match stack {
            Some(_) => {
                1 + stdio
                    .into_iter()
                    .chain([err_w.as_raw_fd(), setup.max_fd()])
                    .max()
                    .unwrap_or(2)
            }
            None => 0,
        },
        ..ChildArgs::new(setup, in_group.is_some(), stdio, &exec, err_w.as_raw_fd())
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
    let pidfd = (pidfd >= 0).then(|| crate::sys::park(unsafe { OwnedFd::from_raw_fd(pidfd) }));
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
unsafe fn raw_clone3_with(args: &CloneArgs, arg: *mut c_void, entry: extern "C" fn(*mut c_void) -> !) -> i64 {
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

/// Runs `entry(arg)` in a new process that shares our memory until it execs or exits
/// (`CLONE_VM | CLONE_VFORK`, as posix_spawn does): no page tables are copied, and the node
/// takes no copy-on-write faults afterwards. It shares our descriptor table too
/// (`CLONE_FILES`) until it takes the part it needs with [`own_fds`]. This thread waits until the child has exec'd
/// or exited, with every signal blocked. Returns the child's pid (its exit signal is
/// SIGCHLD), or `Ok(None)` where this is not available (no `clone3` with a stack here or in
/// the kernel): the caller forks instead.
///
/// # Safety
/// `entry` must call [`own_fds`] before it opens, moves or closes a descriptor and
/// [`reset_handlers`] before it unblocks any signal, touch only its own
/// stack and what `arg` points to (which must outlive the call), make only
/// async-signal-safe system calls, and end in exec or `_exit`, never returning.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn vfork(
    entry: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> io::Result<Option<i32>> {
    let stack = Stack::new()?;
    let clone_args = stack.clone_args(CLONE_VM | CLONE_VFORK | CLONE_FILES);
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
pub(crate) unsafe fn vfork(_: extern "C" fn(*mut c_void) -> !, _: *mut c_void) -> io::Result<Option<i32>> {
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

/// In the child (its handlers already the defaults): its own descriptor table (when cloned on
/// ours), the signal mask, default SIGPIPE, stdio, the setup, off the spawning thread's CPU,
/// then exec. Returns the errno of what failed (it only returns on failure).
///
/// # Safety
/// Only in a child just created by `clone3`, before exec; the pointers in `args` must be
/// valid (prepared by `spawn` before the clone).
unsafe fn child(args: &ChildArgs<'_>) -> i32 {
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    if args.boundary > 0 {
        // Off the node's descriptor table (CLONE_FILES) before any descriptor is touched.
        let e = own_fds(args.boundary);
        if e != 0 {
            return e;
        }
    }
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
