//! The pod sandbox holder's fork and its life in the child ([`crate::sandbox`] has the design).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{ForkResult, fork, pipe2};

use crate::sandbox::{Holder, HolderError, HolderSpec, STEPS};

/// Forks the holder and waits until it is ready. Must be called where blocking is fine.
pub(crate) fn spawn_holder(spec: &HolderSpec) -> Result<Holder, HolderError> {
    let node = |step| move |source| HolderError::Node { step, source };
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| node("pipe")(io::Error::from(e)))?;
    let devnull = fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(node("open /dev/null"))?;
    let hostname = spec.hostname.as_bytes();
    let wfd = write_end.as_raw_fd();
    let nfd = devnull.as_raw_fd();
    // The pause program's invocation, made before the fork (the child must not allocate).
    let argv: [*const libc::c_char; 3] = [c"podvisor-pause".as_ptr(), c"pause".as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let exec = spec.program.map(|fd| (fd, &argv, &envp));
    let guard = crate::process::owned();
    // SAFETY: between fork and the end of the child only async-signal-safe system calls run
    // (dup2, close_range, setsid, prctl, unshare, mount, sethostname, write, pause, _exit) on
    // data that was prepared before the fork; the child never returns into Rust code that
    // could allocate or take a lock.
    let forked = unsafe { fork() };
    match forked {
        Ok(ForkResult::Child) => {
            // SAFETY: see above; `holder_main` never returns.
            unsafe { holder_main(wfd, nfd, hostname, spec, exec) }
        }
        Ok(ForkResult::Parent { child }) => {
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
        Err(e) => Err(node("fork")(io::Error::from(e))),
    }
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
/// # Safety
/// Only call in a freshly forked child; it never returns.
unsafe fn holder_main(
    wfd: i32,
    nfd: i32,
    hostname: &[u8],
    spec: &HolderSpec,
    exec: Option<PauseExec<'_>>,
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
