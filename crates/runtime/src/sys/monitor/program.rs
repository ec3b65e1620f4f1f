//! `podvisor-monitor`: the program that owns one container instance, so the instance outlives
//! the node process (issue 18). It is not a module of the runtime: `build.rs` compiles this
//! file on its own and the runtime carries the executable, runs it from a memfd
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
//! It has no C library and no `std` (`core` and `alloc` only, its own entry point, its own
//! system calls, pages from `mmap` for its few allocations): every container start and every
//! pod sandbox executes it, and glibc's start-up alone (its CPU feature and cache probes, each
//! `cpuid` a trap to the hypervisor on a virtual machine) was about 0.3 ms of each of those
//! executions on the development machine, more than the rest of the exec. x86_64 and aarch64.
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

#![no_std]
#![no_main]
#![allow(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::ffi::CStr;
use core::time::Duration;

#[allow(dead_code)]
#[path = "../../logs/cri.rs"]
mod cri;

/// The kernel's interface, as much of it as the monitor uses.
mod sys {
    use core::arch::asm;
    use core::ffi::CStr;
    use core::time::Duration;

    #[cfg(target_arch = "x86_64")]
    mod nr {
        pub const READ: usize = 0;
        pub const WRITE: usize = 1;
        pub const CLOSE: usize = 3;
        pub const LSEEK: usize = 8;
        pub const MMAP: usize = 9;
        pub const MUNMAP: usize = 11;
        pub const RT_SIGACTION: usize = 13;
        pub const RT_SIGPROCMASK: usize = 14;
        pub const MREMAP: usize = 25;
        pub const WAIT4: usize = 61;
        pub const FCHMOD: usize = 91;
        pub const PRCTL: usize = 157;
        pub const CLOCK_GETTIME: usize = 228;
        pub const CLOCK_NANOSLEEP: usize = 230;
        pub const EXIT_GROUP: usize = 231;
        pub const OPENAT: usize = 257;
        pub const UNLINKAT: usize = 263;
        pub const PPOLL: usize = 271;
        pub const SIGNALFD4: usize = 289;
        pub const RENAMEAT2: usize = 316;
        pub const PIDFD_OPEN: usize = 434;
    }

    #[cfg(target_arch = "aarch64")]
    mod nr {
        pub const READ: usize = 63;
        pub const WRITE: usize = 64;
        pub const CLOSE: usize = 57;
        pub const LSEEK: usize = 62;
        pub const MMAP: usize = 222;
        pub const MUNMAP: usize = 215;
        pub const RT_SIGACTION: usize = 134;
        pub const RT_SIGPROCMASK: usize = 135;
        pub const MREMAP: usize = 216;
        pub const WAIT4: usize = 260;
        pub const FCHMOD: usize = 52;
        pub const PRCTL: usize = 167;
        pub const CLOCK_GETTIME: usize = 113;
        pub const CLOCK_NANOSLEEP: usize = 115;
        pub const EXIT_GROUP: usize = 94;
        pub const OPENAT: usize = 56;
        pub const UNLINKAT: usize = 35;
        pub const PPOLL: usize = 73;
        pub const SIGNALFD4: usize = 74;
        pub const RENAMEAT2: usize = 276;
        pub const PIDFD_OPEN: usize = 434;
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    compile_error!("the container monitor knows the system calls of x86_64 and aarch64 only");

    pub use nr::*;

    pub const EINTR: isize = 4;
    pub const EAGAIN: isize = 11;
    pub const ENOENT: isize = 2;
    pub const SIGHUP: usize = 1;
    pub const SIGINT: usize = 2;
    pub const SIGPIPE: usize = 13;
    pub const SIGCHLD: usize = 17;
    pub const POLLIN: i16 = 0x1;
    pub const POLLERR: i16 = 0x8;
    pub const POLLHUP: i16 = 0x10;
    pub const WNOHANG: usize = 1;
    pub const AT_FDCWD: isize = -100;
    pub const O_WRONLY: usize = 0o1;
    pub const O_CREAT: usize = 0o100;
    pub const O_TRUNC: usize = 0o1000;
    pub const O_APPEND: usize = 0o2000;
    pub const O_CLOEXEC: usize = 0o2000000;
    pub const SFD_NONBLOCK: usize = 0o4000;
    pub const SFD_CLOEXEC: usize = 0o2000000;
    pub const PR_SET_NAME: usize = 15;
    pub const CLOCK_REALTIME: usize = 0;
    pub const CLOCK_MONOTONIC: usize = 1;
    pub const SEEK_END: usize = 2;
    pub const PROT_READ_WRITE: usize = 0x3;
    pub const MAP_PRIVATE_ANONYMOUS: usize = 0x02 | 0x20;
    pub const MREMAP_MAYMOVE: usize = 1;
    /// The kernel's signal set is 64 bits.
    pub const SIGSET_SIZE: usize = 8;

    /// A system call with up to six arguments; the result, or `-errno`.
    ///
    /// # Safety
    /// The arguments must be what system call `n` expects (pointers valid for it).
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn call(n: usize, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the caller's contract; `syscall` clobbers rcx and r11 only.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                in("r8") a[4],
                in("r9") a[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// A system call with up to six arguments; the result, or `-errno`.
    ///
    /// # Safety
    /// The arguments must be what system call `n` expects (pointers valid for it).
    #[cfg(target_arch = "aarch64")]
    pub unsafe fn call(n: usize, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the caller's contract; `svc 0` returns in x0.
        unsafe {
            asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1],
                in("x2") a[2],
                in("x3") a[3],
                in("x4") a[4],
                in("x5") a[5],
                options(nostack),
            );
        }
        ret
    }

    /// `call` with fewer arguments (the rest zero).
    pub unsafe fn call3(n: usize, a: usize, b: usize, c: usize) -> isize {
        // SAFETY: the caller's contract.
        unsafe { call(n, [a, b, c, 0, 0, 0]) }
    }

    pub fn exit(code: usize) -> ! {
        loop {
            // SAFETY: exit_group takes a code and does not return.
            unsafe { call3(EXIT_GROUP, code, 0, 0) };
        }
    }

    pub fn read(fd: i32, buf: &mut [u8]) -> isize {
        // SAFETY: the buffer is valid for `buf.len()` bytes.
        unsafe { call3(READ, fd as usize, buf.as_mut_ptr() as usize, buf.len()) }
    }

    /// Reads into the spare capacity of `buf` (which it must have) and extends `buf` by what
    /// was read; the count or `-errno`.
    pub fn read_into(fd: i32, buf: &mut alloc::vec::Vec<u8>) -> isize {
        let spare = buf.spare_capacity_mut();
        // SAFETY: the spare capacity is allocated for `spare.len()` bytes; the kernel writes
        // at most that many.
        let n = unsafe { call3(READ, fd as usize, spare.as_mut_ptr() as usize, spare.len()) };
        if n > 0 {
            // SAFETY: the read initialized the next `n` bytes (at most the spare capacity).
            unsafe { buf.set_len(buf.len() + n as usize) };
        }
        n
    }

    /// Writes all of `bytes` (retrying short writes and interruptions); `-errno` on failure.
    pub fn write_all(fd: i32, mut bytes: &[u8]) -> Result<(), isize> {
        while !bytes.is_empty() {
            // SAFETY: the slice is valid for its length.
            let n = unsafe { call3(WRITE, fd as usize, bytes.as_ptr() as usize, bytes.len()) };
            if n == -EINTR {
                continue;
            }
            if n <= 0 {
                return Err(if n == 0 { -5 } else { n });
            }
            bytes = &bytes[n as usize..];
        }
        Ok(())
    }

    pub fn close(fd: i32) {
        // SAFETY: closing a descriptor of ours.
        unsafe { call3(CLOSE, fd as usize, 0, 0) };
    }

    /// `path` (bytes without NUL) as a NUL-terminated copy for the kernel.
    pub fn c_path(path: &[u8]) -> alloc::vec::Vec<u8> {
        let mut c = alloc::vec::Vec::with_capacity(path.len() + 1);
        c.extend_from_slice(path);
        c.push(0);
        c
    }

    pub fn open(path: &[u8], flags: usize, mode: u32) -> isize {
        let c = c_path(path);
        // Up to its first NUL, as the kernel would read it.
        CStr::from_bytes_until_nul(&c).map_or(-ENOENT, |c| open_c(c, flags, mode))
    }

    /// [`open`] of a path that is NUL-terminated already.
    pub fn open_c(path: &CStr, flags: usize, mode: u32) -> isize {
        // SAFETY: a NUL-terminated path that lives across the call.
        unsafe { call(OPENAT, [AT_FDCWD as usize, path.as_ptr() as usize, flags, mode as usize, 0, 0]) }
    }

    pub fn now(clock: usize) -> Duration {
        let mut ts = [0i64; 2];
        // SAFETY: the kernel writes a `struct timespec` (two 64-bit fields) into `ts`.
        unsafe { call3(CLOCK_GETTIME, clock, ts.as_mut_ptr() as usize, 0) };
        Duration::new(u64::try_from(ts[0]).unwrap_or(0), u32::try_from(ts[1]).unwrap_or(0))
    }

    pub fn sleep(d: Duration) {
        let ts = [d.as_secs() as i64, i64::from(d.subsec_nanos())];
        // SAFETY: a `struct timespec` to read; no remainder wanted.
        unsafe { call(CLOCK_NANOSLEEP, [CLOCK_MONOTONIC, 0, ts.as_ptr() as usize, 0, 0, 0]) };
    }

    pub fn set_name(name: &core::ffi::CStr) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated name.
        unsafe { call3(PRCTL, PR_SET_NAME, name.as_ptr() as usize, 0) };
    }

    /// The kernel's `struct sigaction` (the same on x86_64 and aarch64).
    #[repr(C)]
    struct SigAction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }

    pub fn ignore(sig: usize) {
        let act = SigAction {
            handler: 1, // SIG_IGN
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a valid `struct sigaction`; no old one wanted.
        unsafe { call(RT_SIGACTION, [sig, core::ptr::from_ref(&act) as usize, 0, SIGSET_SIZE, 0, 0]) };
    }

    pub fn mask_of(sig: usize) -> u64 {
        1 << (sig - 1)
    }

    /// `struct pollfd`.
    #[repr(C)]
    pub struct PollFd {
        pub fd: i32,
        pub events: i16,
        pub revents: i16,
    }

    /// Waits for `fds` (forever when `timeout` is `None`, or until a signal with no `fds`).
    pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> isize {
        let ts = timeout.map(|d| [d.as_secs() as i64, i64::from(d.subsec_nanos())]);
        let ts_ptr = ts.as_ref().map_or(0, |t| t.as_ptr() as usize);
        // SAFETY: `fds` is a live array of its length; `ts` lives across the call.
        unsafe { call(PPOLL, [fds.as_mut_ptr() as usize, fds.len(), ts_ptr, 0, SIGSET_SIZE, 0]) }
    }
}

/// Pages straight from the kernel: the monitor allocates little (its buffers, a few paths), so
/// each allocation is a mapping of its own, resident only where written.
struct Pages;

// SAFETY: every block is a fresh anonymous mapping, page-aligned (so for any alignment up to a
// page), unmapped with the size it was mapped with.
unsafe impl core::alloc::GlobalAlloc for Pages {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        if layout.align() > 4096 {
            return core::ptr::null_mut();
        }
        // SAFETY: an anonymous private mapping of the asked size.
        let p = unsafe {
            sys::call(
                sys::MMAP,
                [0, layout.size().max(1), sys::PROT_READ_WRITE, sys::MAP_PRIVATE_ANONYMOUS, usize::MAX, 0],
            )
        };
        if (-4095..0).contains(&p) { core::ptr::null_mut() } else { p as *mut u8 }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: `ptr` was mapped by `alloc` or `realloc` with this size.
        unsafe { sys::call3(sys::MUNMAP, ptr as usize, layout.size().max(1), 0) };
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: core::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was mapped with `layout.size()`; the kernel moves it if it must.
        let p = unsafe {
            sys::call(
                sys::MREMAP,
                [ptr as usize, layout.size().max(1), new_size.max(1), sys::MREMAP_MAYMOVE, 0, 0],
            )
        };
        if (-4095..0).contains(&p) { core::ptr::null_mut() } else { p as *mut u8 }
    }
}

#[global_allocator]
static ALLOCATOR: Pages = Pages;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys::exit(134)
}

/// Never called: panics abort (this program is built with `panic=abort`), but `alloc`'s
/// unwinding tables name it.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// The memory functions the compiler calls, which a C library would provide: `rep movsb` and
/// `rep stosb` on x86_64, volatile byte loops elsewhere (a plain loop could be compiled back
/// into a call to the function itself).
mod mem {
    #[unsafe(no_mangle)]
    unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the C contract: both valid for `n` bytes, not overlapping.
        unsafe { forward(dest, src, n) };
        dest
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the C contract: both valid for `n` bytes; an overlap where the destination
        // is after the source is copied from the end.
        unsafe {
            if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize) + n {
                forward(dest, src, n);
            } else {
                let mut i = n;
                while i > 0 {
                    i -= 1;
                    dest.add(i).write_volatile(src.add(i).read_volatile());
                }
            }
        }
        dest
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
        // SAFETY: the C contract: `dest` valid for `n` bytes.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            core::arch::asm!(
                "rep stosb",
                inout("rdi") dest => _,
                inout("rcx") n => _,
                in("al") c as u8,
                options(nostack, preserves_flags),
            );
            #[cfg(not(target_arch = "x86_64"))]
            for i in 0..n {
                dest.add(i).write_volatile(c as u8);
            }
        }
        dest
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: the C contract: both valid for `n` bytes.
            let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: the same contract.
        unsafe { memcmp(a, b, n) }
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn strlen(s: *const u8) -> usize {
        let mut n = 0;
        // SAFETY: the C contract: `s` is NUL-terminated.
        while unsafe { s.add(n).read_volatile() } != 0 {
            n += 1;
        }
        n
    }

    /// Copies `n` bytes from the start.
    unsafe fn forward(dest: *mut u8, src: *const u8, n: usize) {
        // SAFETY: the callers' contract.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            core::arch::asm!(
                "rep movsb",
                inout("rdi") dest => _,
                inout("rsi") src => _,
                inout("rcx") n => _,
                options(nostack, preserves_flags),
            );
            #[cfg(not(target_arch = "x86_64"))]
            for i in 0..n {
                dest.add(i).write_volatile(src.add(i).read_volatile());
            }
        }
    }
}

// The process's entry: the kernel leaves argc, then argv's pointers, on the stack.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "bl {entry}",
    "brk #0",
    entry = sym entry,
);

/// # Safety
/// Called once, by `_start`, with the stack the kernel set up.
unsafe extern "C" fn entry(stack: *const usize) -> ! {
    // SAFETY: at entry the stack holds argc, then argc pointers to NUL-terminated strings.
    let args: Vec<&'static CStr> = unsafe {
        let argc = *stack;
        let argv = stack.add(1).cast::<*const core::ffi::c_char>();
        (0..argc).map(|i| CStr::from_ptr(*argv.add(i))).collect()
    };
    if args.get(1).map(|a| a.to_bytes()) == Some(&b"pause"[..]) {
        pause();
    }
    let Some(args) = parse(&args) else {
        let _ = sys::write_all(2, b"podvisor-monitor: bad invocation (it is started by the podvisor runtime only)\n");
        sys::exit(2);
    };
    run(&args)
}

/// The log's files, through the monitor's own system calls (errors are `-errno`).
enum MonitorFs {}

/// An open file, closed when dropped.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// A descriptor, or the `-errno` of the call that did not return one.
fn fd(ret: isize) -> Result<Fd, isize> {
    if ret < 0 { Err(ret) } else { Ok(Fd(ret as i32)) }
}

impl cri::LogFs for MonitorFs {
    type File = Fd;
    type Error = isize;

    fn create(path: &[u8]) -> Result<Fd, isize> {
        let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | sys::O_CLOEXEC;
        let file = fd(sys::open(path, flags, cri::LOG_MODE))?;
        // The mode also when the file existed with another.
        // SAFETY: fchmod on our own descriptor.
        let ret = unsafe { sys::call3(sys::FCHMOD, file.0 as usize, cri::LOG_MODE as usize, 0) };
        if ret < 0 { Err(ret) } else { Ok(file) }
    }

    fn append(path: &[u8]) -> Result<(Fd, u64), isize> {
        let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND | sys::O_CLOEXEC;
        let file = fd(sys::open(path, flags, cri::LOG_MODE))?;
        // SAFETY: lseek on our own descriptor.
        let size = unsafe { sys::call3(sys::LSEEK, file.0 as usize, 0, sys::SEEK_END) };
        if size < 0 { Err(size) } else { Ok((file, size as u64)) }
    }

    fn write_all(file: &mut Fd, bytes: &[u8]) -> Result<(), isize> {
        sys::write_all(file.0, bytes)
    }

    fn remove(path: &[u8]) -> Result<(), isize> {
        let c = sys::c_path(path);
        // SAFETY: a NUL-terminated path that lives across the call.
        let ret = unsafe { sys::call3(sys::UNLINKAT, sys::AT_FDCWD as usize, c.as_ptr() as usize, 0) };
        if ret < 0 && ret != -sys::ENOENT { Err(ret) } else { Ok(()) }
    }

    fn rename(from: &[u8], to: &[u8], missing_ok: bool) -> Result<(), isize> {
        let (from, to) = (sys::c_path(from), sys::c_path(to));
        let at = sys::AT_FDCWD as usize;
        // SAFETY: two NUL-terminated paths that live across the call; no flags.
        let ret = unsafe { sys::call(sys::RENAMEAT2, [at, from.as_ptr() as usize, at, to.as_ptr() as usize, 0, 0]) };
        if ret < 0 && !(missing_ok && ret == -sys::ENOENT) { Err(ret) } else { Ok(()) }
    }
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
    log: &'static [u8],
    max_bytes: u64,
    max_files: u32,
    /// As it came, NUL-terminated: opened on the way out with no copy made.
    exit: &'static CStr,
    streams: u32,
}

fn number<T: core::str::FromStr>(arg: &[u8]) -> Option<T> {
    core::str::from_utf8(arg).ok()?.parse().ok()
}

fn parse(args: &[&'static CStr]) -> Option<Args> {
    if args.len() != 8 || args[1].to_bytes() != b"1" {
        return None;
    }
    Some(Args {
        pid: number(args[2].to_bytes())?,
        log: args[3].to_bytes(),
        max_bytes: number(args[4].to_bytes())?,
        max_files: number(args[5].to_bytes())?,
        exit: args[6],
        streams: number(args[7].to_bytes()).filter(|n| (1..=2).contains(n))?,
    })
}

/// A descriptor that is readable while a `SIGCHLD` is pending: the main process or an orphan
/// handed to us ended. `SIGCHLD` is blocked for it, so it is kept pending, not discarded as its
/// default disposition would. Negative if the kernel refuses.
fn child_events() -> i32 {
    let set = sys::mask_of(sys::SIGCHLD);
    // SAFETY: blocking a signal (a 64-bit set to read); signalfd returns a new fd or -errno.
    unsafe {
        if sys::call(sys::RT_SIGPROCMASK, [0, core::ptr::from_ref(&set) as usize, 0, sys::SIGSET_SIZE, 0, 0]) != 0 {
            return -1;
        }
        let flags = sys::SFD_NONBLOCK | sys::SFD_CLOEXEC;
        sys::call(sys::SIGNALFD4, [usize::MAX, core::ptr::from_ref(&set) as usize, sys::SIGSET_SIZE, flags, 0, 0])
            as i32
    }
}

/// Reads every pending `SIGCHLD` off `fd` (what ended is then reaped with `wait4`).
fn drain(fd: i32) {
    // `struct signalfd_siginfo` is 128 bytes: a read returns whole ones.
    let mut infos = [0u8; 128 * 8];
    while sys::read(fd, &mut infos) > 0 {}
}

/// The sandbox holder's wait (`pause` mode, see the module's docs).
fn pause() -> ! {
    sys::set_name(c"podvisor-pause");
    sys::close(4);
    let _ = sys::write_all(3, &[0]);
    sys::close(3);
    loop {
        // No descriptors and no timeout: returns only when a signal is handled.
        sys::poll(&mut [], None);
    }
}

/// Monitors the main process and its output until both have ended, then exits.
fn run(args: &Args) -> ! {
    for sig in [sys::SIGHUP, sys::SIGINT, sys::SIGPIPE] {
        sys::ignore(sig);
    }
    sys::set_name(c"podvisor-mon");
    // A pidfd wakes the loop when the main process ends (it is our child: no other reaper).
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -errno.
    let pidfd = unsafe { sys::call3(sys::PIDFD_OPEN, args.pid as usize, 0, 0) } as i32;
    // And a SIGCHLD when anything we must reap ends, the container's orphans too: nothing else
    // wakes an idle monitor (a timer would, at every tick, in each of a thousand monitors).
    let children = child_events();
    let mut log = cri::RotatingFile::<MonitorFs>::append(args.log.to_vec(), args.max_bytes, args.max_files).ok();
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
    // Mapped, not written: reads touch only the pages a container's output fills (most
    // monitors of idle containers keep none resident).
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut records = Vec::with_capacity(80 * 1024);
    let mut main_ended = false;
    // Reused at every wake-up (an allocation here is a mapping of its own).
    let mut fds: Vec<sys::PollFd> = Vec::with_capacity(4);
    loop {
        let no_children;
        // Reap: the main process (its exit recorded at once) and every orphan handed to us.
        loop {
            let mut status = 0i32;
            // SAFETY: wait4 writes the status into our local; no rusage wanted.
            let reaped = unsafe {
                sys::call(
                    sys::WAIT4,
                    [usize::MAX, core::ptr::from_mut(&mut status) as usize, sys::WNOHANG, 0, 0, 0],
                )
            };
            if reaped > 0 {
                if reaped == args.pid as isize {
                    main_ended = true;
                    // `records` is empty between reads: no allocation on the way out.
                    record_exit(args, status, &mut records);
                    records.clear();
                }
                continue;
            }
            no_children = reaped < 0 && reaped != -sys::EINTR;
            break;
        }
        let streams_open = sources.iter().any(|s| s.open);
        if main_ended && !streams_open && no_children {
            // Out with every buffer still mapped: the exit unmaps them all at once, where
            // dropping each would be a `munmap` and a TLB flush (on every CPU the monitor ran
            // on) on the path between the container's end and the node's hearing of it.
            sys::exit(0);
        }
        fds.clear();
        fds.extend(sources.iter().filter(|s| s.open).map(|s| sys::PollFd {
            fd: s.fd,
            events: sys::POLLIN,
            revents: 0,
        }));
        if !main_ended && pidfd >= 0 {
            fds.push(sys::PollFd {
                fd: pidfd,
                events: sys::POLLIN,
                revents: 0,
            });
        }
        if children >= 0 {
            fds.push(sys::PollFd {
                fd: children,
                events: sys::POLLIN,
                revents: 0,
            });
        }
        // Without the signalfd, orphans are reaped at least once a second.
        let timeout = (children < 0).then_some(Duration::from_secs(1));
        let n = sys::poll(&mut fds, timeout);
        if n < 0 && n != -sys::EINTR {
            // Nothing sensible is left to wait on: reap with a pause.
            sys::sleep(Duration::from_millis(100));
        }
        for pfd in fds.iter().filter(|p| p.revents & (sys::POLLIN | sys::POLLHUP | sys::POLLERR) != 0) {
            if pfd.fd == children {
                drain(children);
                continue;
            }
            let Some(source) = sources.iter_mut().find(|s| s.open && s.fd == pfd.fd) else {
                continue;
            };
            buf.clear();
            let got = sys::read_into(source.fd, &mut buf);
            if got == -sys::EINTR || got == -sys::EAGAIN {
                continue;
            }
            // The records of one read share the time it returned (one clock call per read,
            // not per line: this clock is a system call here, not glibc's vDSO).
            let (name, at) = (source.name, sys::now(sys::CLOCK_REALTIME));
            let mut emit = |partial: bool, text: &[u8]| {
                cri::encode(&mut records, at, name, partial, text);
            };
            if got <= 0 {
                source.splitter.finish(&mut emit);
                source.open = false;
                sys::close(source.fd);
            } else {
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

/// Writes the exit record of the main process, whose wait status is `status`, composed in
/// `text` (empty).
fn record_exit(args: &Args, status: i32, text: &mut Vec<u8>) {
    let finished = u64::try_from(sys::now(sys::CLOCK_REALTIME).as_nanos()).unwrap_or(u64::MAX);
    let (how, value) = if status & 0x7f == 0 {
        (&b"exited "[..], (status >> 8) & 0xff)
    } else {
        (&b"signaled "[..], status & 0x7f)
    };
    text.extend_from_slice(b"podvisor-exit 1\npid ");
    cri::push_digits(text, u64::from(args.pid.unsigned_abs()), 1);
    text.push(b'\n');
    text.extend_from_slice(how);
    cri::push_digits(text, u64::from(value.unsigned_abs()), 1);
    text.extend_from_slice(b"\nfinished ");
    cri::push_digits(text, finished, 1);
    text.push(b'\n');
    // One write, appended: the node's record may be there already, or come after it.
    let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND | sys::O_CLOEXEC;
    if let Ok(file) = fd(sys::open_c(args.exit, flags, 0o666)) {
        let _ = sys::write_all(file.0, text);
    }
}
