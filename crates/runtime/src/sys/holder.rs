//! The pod sandbox holder's fork and its life in the child ([`crate::sandbox`] has the design).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{ForkResult, fork, pipe2};

use super::clone::{own_fds, reset_handlers, vfork};
use crate::sandbox::{Holder, HolderError, HolderSpec, STEPS};

/// Starts the holder and waits until it is ready. Must be called where blocking is fine.
///
/// With a pause program to execute, the holder shares the node's memory until its exec
/// ([`vfork`]): a fork copied the node's page tables (and the node then took a copy-on-write
/// fault for each page it wrote while the holder lived unexec'd), about a tenth of the node's
/// CPU in a burst of 1,000 pods. Where that is not available, or the exec fails, it is forked
/// (and then waits as the forked process if it cannot exec).
pub(crate) fn spawn_holder(spec: &HolderSpec) -> Result<Holder, HolderError> {
    if spec.program.is_some() {
        match start(spec, true) {
            Err(HolderError::Holder { step, .. }) if step == STEPS[EXEC_STEP as usize] => {}
            started => return started,
        }
    }
    start(spec, false)
}

/// The step a holder that shares the node's memory reports when its exec fails (or it could
/// not take its descriptors off the node's table): the node forks one instead.
const EXEC_STEP: u8 = 8;

/// What a holder that shares the node's memory reads, all made before its clone.
struct HolderArgs<'a> {
    wfd: i32,
    nfd: i32,
    hostname: &'a [u8],
    spec: &'a HolderSpec,
    exec: Option<PauseExec<'a>>,
    /// One above the highest descriptor of ours it uses ([`own_fds`]).
    boundary: i32,
}

extern "C" fn holder_entry(arg: *mut std::ffi::c_void) -> ! {
    // SAFETY: `arg` is `start`'s `HolderArgs`, alive while this thread of the node waits for
    // the exec (CLONE_VFORK); a handler of the node's must not run here, on its memory.
    unsafe {
        let a = &*arg.cast::<HolderArgs<'_>>();
        let e = own_fds(a.boundary);
        if e != 0 {
            // The node then forks the holder instead, as when the exec fails.
            let msg = [EXEC_STEP, e as u8];
            libc::write(a.wfd, msg.as_ptr().cast(), 2);
            libc::_exit(1);
        }
        reset_handlers();
        holder_main(a.wfd, a.nfd, a.hostname, a.spec, a.exec, true)
    }
}

/// Starts the holder, sharing the node's memory until it execs (`shared`, where [`vfork`] is
/// available) or forked.
fn start(spec: &HolderSpec, shared: bool) -> Result<Holder, HolderError> {
    let node = |step| move |source| HolderError::Node { step, source };
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| node("pipe")(io::Error::from(e)))?;
    let devnull = crate::sys::dev_null().map_err(node("open /dev/null"))?;
    let hostname = spec.hostname.as_bytes();
    let wfd = write_end.as_raw_fd();
    let nfd = devnull.as_raw_fd();
    // The pause program's invocation, made before the clone (the child must not allocate).
    let argv: [*const libc::c_char; 3] = [c"podvisor-pause".as_ptr(), c"pause".as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let exec = spec.program.map(|fd| (fd, &argv, &envp));
    let guard = crate::process::owned();
    let cloned = if shared {
        let args = HolderArgs {
            wfd,
            nfd,
            hostname,
            spec,
            exec,
            boundary: 1 + wfd.max(nfd).max(spec.program.unwrap_or(-1)),
        };
        // SAFETY: `holder_entry` resets the handlers first and then makes only
        // async-signal-safe system calls on `args` (alive until this returns) and its stack,
        // ending in exec or _exit.
        unsafe { vfork(holder_entry, std::ptr::from_ref(&args).cast_mut().cast()) }.map_err(node("clone"))?
    } else {
        None
    };
    let child = match cloned {
        Some(pid) => nix::unistd::Pid::from_raw(pid),
        // SAFETY: between fork and the end of the child only async-signal-safe system calls
        // run (dup2, close_range, setsid, prctl, unshare, mount, sethostname, write, pause,
        // _exit) on data that was prepared before the fork; the child never returns into Rust
        // code that could allocate or take a lock.
        None => match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: see above; `holder_main` never returns.
                unsafe { holder_main(wfd, nfd, hostname, spec, exec, false) }
            }
            Ok(ForkResult::Parent { child }) => child,
            Err(e) => return Err(node("fork")(io::Error::from(e))),
        },
    };
    let pid = child.as_raw();
    let mut guard = guard;
    guard.insert(pid);
    drop(guard);
    drop(write_end);
    let mut buf = [0u8; 2];
    let n = nix::unistd::read(read_end.as_raw_fd(), &mut buf).unwrap_or(0);
    if n == 1 && buf[0] == 0 {
        return Ok(Holder { pid });
    }
    // It failed: reap it.
    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(child, None);
    crate::process::owned().remove(&pid);
    if n == 2 {
        let step = STEPS.get(usize::from(buf[0])).copied().unwrap_or("setup");
        return Err(HolderError::Holder {
            step,
            errno: nix::errno::Errno::from_raw(i32::from(buf[1])),
        });
    }
    Err(HolderError::Holder {
        step: "setup",
        errno: nix::errno::Errno::EIO,
    })
}

/// The pause program to execute once set up: its descriptor, argv and envp (NULL-terminated).
type PauseExec<'a> = (i32, &'a [*const libc::c_char; 3], &'a [*const libc::c_char; 1]);

/// The descriptor the pause program is executed from in the holder.
const PROGRAM_FD: i32 = 4;

/// The holder's life after the fork. Once its namespaces, mounts and host name are set up it
/// executes the pause program (`exec`) when there is one, which reports ready on fd 3: the
/// holder then shares no page with the node, where a forked process would keep copies of every
/// page the node writes afterwards. Without one (or if that fails) it reports ready itself and
/// waits.
///
/// A holder that shares the node's memory (`shared`) cannot wait unexec'd (the node's thread
/// waits for its exec): if the exec fails it reports that and exits.
///
/// # Safety
/// Only call in a freshly forked child, or one cloned by [`vfork`] after its handlers are
/// reset; it never returns.
unsafe fn holder_main(
    wfd: i32,
    nfd: i32,
    hostname: &[u8],
    spec: &HolderSpec,
    exec: Option<PauseExec<'_>>,
    shared: bool,
) -> ! {
    let fail = |step: u8, errno: i32| -> ! {
        let msg = [step, errno as u8];
        // SAFETY: write and _exit are async-signal-safe; the buffer lives on our stack.
        unsafe {
            libc::write(3, msg.as_ptr().cast(), 2);
            libc::_exit(1)
        }
    };
    // SAFETY: plain fd syscalls on fds inherited from the parent.
    unsafe {
        // The report pipe becomes fd 3, stdio becomes /dev/null, everything else is closed so the
        // holder keeps no pipe or socket of the node open.
        if libc::dup2(wfd, 3) < 0 {
            libc::_exit(1);
        }
        for std_fd in 0..3 {
            libc::dup2(nfd, std_fd);
        }
        // The pause program's descriptor becomes fd 4 (without close-on-exec).
        let keep: i32 = match exec {
            Some((fd, ..)) if libc::dup2(fd, PROGRAM_FD) == PROGRAM_FD => PROGRAM_FD + 1,
            _ => PROGRAM_FD,
        };
        if libc::syscall(libc::SYS_close_range, keep.unsigned_abs(), u32::MAX, 0u32) != 0 {
            for fd in keep..4096 {
                libc::close(fd);
            }
        }
        if libc::setsid() < 0 {
            fail(1, nix::errno::Errno::last_raw());
        }
        libc::prctl(libc::PR_SET_NAME, c"podvisor-pause".as_ptr(), 0, 0, 0);
    }
    let flags = CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS;
    if let Err(e) = unshare(flags) {
        fail(2, e as i32);
    }
    if let Err(e) = mount(
        None::<&std::ffi::CStr>,
        c"/",
        None::<&std::ffi::CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&std::ffi::CStr>,
    ) {
        fail(3, e as i32);
    }
    for (step, bind) in [(4u8, &spec.hosts), (5u8, &spec.resolv)] {
        if let Some((source, target)) = bind
            && let Err(e) = mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                None::<&std::ffi::CStr>,
                MsFlags::MS_BIND,
                None::<&std::ffi::CStr>,
            )
        {
            fail(step, e as i32);
        }
    }
    // SAFETY: the pointer and length describe `hostname`, which outlives the call; argv and
    // envp are NULL-terminated arrays of NUL-terminated strings made before the fork.
    unsafe {
        if libc::sethostname(hostname.as_ptr().cast(), hostname.len()) != 0 {
            fail(6, nix::errno::Errno::last_raw());
        }
        if let Some((_, argv, envp)) = exec {
            // Executed programs keep the signal mask: the holder's must let signals in.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::syscall(
                libc::SYS_execveat,
                PROGRAM_FD,
                c"".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
            if shared {
                fail(EXEC_STEP, nix::errno::Errno::last_raw());
            }
            // It could not be executed: wait as the forked process.
            libc::close(PROGRAM_FD);
        }
        let ok = [0u8];
        libc::write(3, ok.as_ptr().cast(), 1);
        libc::close(3);
        loop {
            libc::pause();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Starts a holder with `program`, and returns where its executable is and whether it
    /// has a network namespace of its own; it is killed and reaped.
    fn holder_with(program: Option<i32>) -> (String, bool) {
        let spec = HolderSpec {
            hostname: "holder-test".into(),
            hosts: None,
            resolv: None,
            program,
        };
        let holder = spawn_holder(&spec).unwrap();
        let exe = fs::read_link(format!("/proc/{}/exe", holder.pid)).unwrap();
        let net = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        let own_net = net(&holder.pid.to_string()) != net("self");
        let pid = nix::unistd::Pid::from_raw(holder.pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();
        crate::process::owned().remove(&holder.pid);
        (exe.to_string_lossy().into_owned(), own_net)
    }

    /// A holder with the pause program shares the node's memory only until it executes it
    /// (no fork of the node); one whose program cannot be executed is forked instead and
    /// waits as it is. Either way it has its own namespaces.
    #[test]
    #[ignore = "needs root"]
    fn a_holder_executes_the_pause_program_or_else_waits_forked() {
        let program = crate::sys::MonitorProgram::load().unwrap();
        let (exe, own_net) = holder_with(Some(program.raw_fd()));
        assert!(exe.contains("memfd:podvisor-monitor"), "{exe}");
        assert!(own_net);

        let not_executable = fs::File::open("/dev/null").unwrap();
        let (exe, own_net) = holder_with(Some(not_executable.as_raw_fd()));
        let ours = fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(exe, ours.to_string_lossy());
        assert!(own_net);
    }
}
