//! `podvisor-monitor`: the program that owns one container instance, so the instance outlives
//! the node process (issue 18). It is not a module of the runtime: `build.rs` compiles this
//! file on its own (`std` only) and the runtime carries the executable, runs it from a memfd
//! (`sys::monitor`) and, through it, the container's main process as its child.
//!
//! What it does, and nothing else (no Kubernetes logic, no connection to the node):
//! - it is the main process's parent and a child subreaper, so it reaps the main process and
//!   every orphan of the container, woken by each `SIGCHLD` (through a signalfd: an idle
//!   monitor never wakes);
//! - it holds the read ends of the container's stdout and stderr (or its pty master) and
//!   writes the CRI log file itself, rotation included (`logs/cri.rs`, included below), so no
//!   line is lost while no node runs;
//! - when the main process ends it appends the exit record (exit code or signal, finish time)
//!   to the file it is given, in one write: the node's `<restart>.state` beside the log, which
//!   holds the node's record of the instance too (or will: whichever comes first creates it);
//! - it holds the container's stdin open when asked (fd 5), so a node restart does not close
//!   it;
//! - it leaves once the main process was reaped, both streams reached their end and it has no
//!   child left: the node kills the container's leftovers, or a node that is away does when it
//!   comes back.
//!
//! Invocation (made by `sys::monitor::spawn`, the only caller):
//! `podvisor-monitor 1 <main pid> <log path> <max bytes> <max files> <exit path> <streams>`,
//! with the stdout reading end on fd 3 and, when `<streams>` is 2, stderr's on fd 4. The first
//! argument is the invocation's version. Standard input, output and error are `/dev/null`.
//!
//! `podvisor-monitor pause` is a pod sandbox holder's second life (`sys::holder`): the forked
//! holder, its namespaces set up, executes this program so that it keeps no copy of the node's
//! memory. It names itself `podvisor-pause`, reports ready on fd 3 (one zero byte, as the
//! forked holder does) and waits for a signal to end it.
//!
//! The exit record is text: `podvisor-exit 1`, `pid <pid>`, `exited <code>` or
//! `signaled <signal>`, and `finished <nanoseconds since the epoch>`, one per line.

#![allow(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[allow(dead_code)]
#[path = "../../logs/cri.rs"]
mod cri;

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

/// glibc's `sigset_t` (1024 bits).
#[repr(C)]
struct SigSet([u64; 16]);

unsafe extern "C" {
    fn poll(fds: *mut PollFd, n: u64, timeout: i32) -> i32;
    fn sigemptyset(set: *mut SigSet) -> i32;
    fn sigaddset(set: *mut SigSet, sig: i32) -> i32;
    fn sigprocmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
    fn signalfd(fd: i32, mask: *const SigSet, flags: i32) -> i32;
    fn read(fd: i32, buf: *mut u8, n: usize) -> isize;
    fn close(fd: i32) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn signal(sig: i32, handler: usize) -> usize;
    fn syscall(n: i64, ...) -> i64;
    fn prctl(option: i32, arg: u64, ...) -> i32;
    fn __errno_location() -> *mut i32;
}

const POLLIN: i16 = 0x1;
const POLLERR: i16 = 0x8;
const POLLHUP: i16 = 0x10;
const WNOHANG: i32 = 1;
const EINTR: i32 = 4;
const EAGAIN: i32 = 11;
const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGPIPE: i32 = 13;
const SIGCHLD: i32 = 17;
const SIG_BLOCK: i32 = 0;
const SFD_NONBLOCK: i32 = 0o4000;
const SFD_CLOEXEC: i32 = 0o2000000;
/// `struct signalfd_siginfo`'s size: a read returns whole ones.
const SIGINFO_SIZE: usize = 128;
const SIG_IGN: usize = 1;
const PR_SET_NAME: i32 = 15;
#[cfg(target_arch = "x86_64")]
const SYS_PIDFD_OPEN: i64 = 434;
#[cfg(target_arch = "aarch64")]
const SYS_PIDFD_OPEN: i64 = 434;

fn errno() -> i32 {
    // SAFETY: glibc's thread-local errno location is always valid to read.
    unsafe { *__errno_location() }
}

/// One stream being read into the log.
struct Source {
    fd: i32,
    name: &'static str,
    splitter: cri::Splitter,
    open: bool,
}

struct Args {
    pid: i32,
    log: PathBuf,
    max_bytes: u64,
    max_files: u32,
    exit: PathBuf,
    streams: u32,
}

fn parse() -> Option<Args> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 || args[1] != "1" {
        return None;
    }
    Some(Args {
        pid: args[2].parse().ok()?,
        log: PathBuf::from(&args[3]),
        max_bytes: args[4].parse().ok()?,
        max_files: args[5].parse().ok()?,
        exit: PathBuf::from(&args[6]),
        streams: args[7].parse().ok().filter(|n| (1..=2).contains(n))?,
    })
}

/// A descriptor that is readable while a `SIGCHLD` is pending: the main process or an orphan
/// handed to us ended. `SIGCHLD` is blocked for it, so it is kept pending, not discarded as its
/// default disposition would. -1 if the kernel refuses.
fn child_events() -> i32 {
    let mut set = SigSet([0; 16]);
    // SAFETY: the set is a local of glibc's `sigset_t` size; blocking a signal in this
    // single-threaded program; signalfd returns a new fd or -1.
    unsafe {
        sigemptyset(&mut set);
        sigaddset(&mut set, SIGCHLD);
        if sigprocmask(SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return -1;
        }
        signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)
    }
}

/// Reads every pending `SIGCHLD` off `fd` (what ended is then reaped with `waitpid`).
fn drain(fd: i32) {
    let mut infos = [0u8; SIGINFO_SIZE * 8];
    // SAFETY: reading into a local buffer, at most its size.
    while unsafe { read(fd, infos.as_mut_ptr(), infos.len()) } > 0 {}
}

/// The sandbox holder's wait (`pause` mode, see the module's docs).
fn pause() -> ! {
    unsafe extern "C" {
        fn pause() -> i32;
        fn write(fd: i32, buf: *const u8, n: usize) -> isize;
    }
    // SAFETY: naming the thread, writing one byte from a local and closing our own fds.
    unsafe {
        prctl(PR_SET_NAME, c"podvisor-pause".as_ptr() as u64);
        close(4);
        let ready = [0u8];
        write(3, ready.as_ptr(), 1);
        close(3);
        loop {
            pause();
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("pause") {
        pause();
    }
    let Some(args) = parse() else {
        eprintln!("podvisor-monitor: bad invocation (it is started by the podvisor runtime only)");
        std::process::exit(2);
    };
    // SAFETY: setting dispositions and the thread name; no handler runs code of ours.
    unsafe {
        for sig in [SIGHUP, SIGINT, SIGPIPE] {
            signal(sig, SIG_IGN);
        }
        prctl(PR_SET_NAME, c"podvisor-mon".as_ptr() as u64);
    }
    // A pidfd wakes the loop when the main process ends (it is our child: no other reaper).
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { syscall(SYS_PIDFD_OPEN, args.pid, 0) } as i32;
    // And a SIGCHLD when anything we must reap ends, the container's orphans too: nothing else
    // wakes an idle monitor (a timer would, at every tick, in each of a thousand monitors).
    let children = child_events();
    let mut log = cri::RotatingFile::append(args.log.clone(), args.max_bytes, args.max_files).ok();
    let mut sources: Vec<Source> = [(3, "stdout"), (4, "stderr")]
        .into_iter()
        .take(args.streams as usize)
        .map(|(fd, name)| Source {
            fd,
            name,
            splitter: cri::Splitter::default(),
            open: true,
        })
        .collect();
    // Not zeroed: a zeroed buffer is written (dirtied) whole at once, where reads touch only the
    // pages a container's output fills (most monitors of idle containers keep none resident).
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut records = Vec::with_capacity(80 * 1024);
    let mut main_ended = false;
    loop {
        let no_children;
        // Reap: the main process (its exit recorded at once) and every orphan handed to us.
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into our local.
            let reaped = unsafe { waitpid(-1, &mut status, WNOHANG) };
            if reaped > 0 {
                if reaped == args.pid {
                    main_ended = true;
                    record_exit(&args, status);
                }
                continue;
            }
            no_children = reaped < 0 && errno() != EINTR;
            break;
        }
        let streams_open = sources.iter().any(|s| s.open);
        if main_ended && !streams_open && no_children {
            break;
        }
        let mut fds: Vec<PollFd> = sources
            .iter()
            .filter(|s| s.open)
            .map(|s| PollFd {
                fd: s.fd,
                events: POLLIN,
                revents: 0,
            })
            .collect();
        if !main_ended && pidfd >= 0 {
            fds.push(PollFd {
                fd: pidfd,
                events: POLLIN,
                revents: 0,
            });
        }
        if children >= 0 {
            fds.push(PollFd {
                fd: children,
                events: POLLIN,
                revents: 0,
            });
        }
        // Without the signalfd, orphans are reaped at least once a second.
        let timeout = if children >= 0 { -1 } else { 1000 };
        // SAFETY: `fds` is a live array of `fds.len()` entries.
        let n = unsafe { poll(fds.as_mut_ptr(), fds.len() as u64, timeout) };
        if n < 0 && errno() != EINTR {
            // Nothing sensible is left to wait on: reap with a pause.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for pfd in fds.iter().filter(|p| p.revents & (POLLIN | POLLHUP | POLLERR) != 0) {
            if pfd.fd == children {
                drain(children);
                continue;
            }
            let Some(source) = sources.iter_mut().find(|s| s.open && s.fd == pfd.fd) else {
                continue;
            };
            buf.clear();
            // SAFETY: reading into our own buffer, at most its capacity.
            let got = unsafe { read(source.fd, buf.as_mut_ptr(), buf.capacity()) };
            if got < 0 && matches!(errno(), EINTR | EAGAIN) {
                continue;
            }
            let name = source.name;
            let mut emit = |partial: bool, text: &[u8]| {
                cri::encode(&mut records, SystemTime::now(), name, partial, text);
            };
            if got <= 0 {
                source.splitter.finish(&mut emit);
                source.open = false;
                // SAFETY: our own fd, closed once.
                unsafe { close(source.fd) };
            } else {
                // SAFETY: the read initialized the first `got` bytes (at most the capacity).
                unsafe { buf.set_len(got as usize) };
                source.splitter.feed(&buf, &mut emit);
            }
            if !records.is_empty() {
                // A failed write drops the records: the container must never block on a full
                // pipe because its log cannot be written.
                if let Some(file) = &mut log
                    && file.write(&records).is_err()
                {
                    log = None;
                }
                records.clear();
            }
        }
    }
}

/// Writes the exit record of the main process, whose wait status is `status`.
fn record_exit(args: &Args, status: i32) {
    let finished = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let how = if status & 0x7f == 0 {
        format!("exited {}", (status >> 8) & 0xff)
    } else {
        format!("signaled {}", status & 0x7f)
    };
    let text = format!("podvisor-exit 1\npid {}\n{how}\nfinished {finished}\n", args.pid);
    // One write, appended: the node's record may be there already, or come after it.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.exit)
        .and_then(|mut f| f.write_all(text.as_bytes()));
}
