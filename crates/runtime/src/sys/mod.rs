//! The audited module: every `unsafe` of the workspace is here, and nowhere else (the crate
//! denies `unsafe_code` outside it; every other crate forbids it).
//!
//! Rules for what lives here:
//! - each `unsafe` block has a `// SAFETY:` comment and each `unsafe fn` a `# Safety` section
//!   (clippy's `undocumented_unsafe_blocks` and `missing_safety_doc` are errors here);
//! - every function exported from here is safe to call: its contract is upheld inside;
//! - between fork (or `clone3`) and exec or `_exit`, a child makes only system calls on data
//!   prepared before the fork: no allocation, no lock, no return into the caller's Rust code.
//!
//! What is here: creating a container's main process ([`clone`]: `clone3` into its cgroup, the
//! `pre_exec` fallback; under its monitor, whose executable is [`monitor`]), the sandbox
//! holder's fork ([`holder`]), pseudo-terminals ([`pty`]), pidfds and their registration
//! with tokio, the C allocator's mmap threshold, and a safe way for other crates to start a
//! program in new namespaces ([`with_new_pod_namespaces`]).
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod clone;
mod holder;
pub(crate) mod monitor;
pub(crate) mod pty;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use nix::sched::CloneFlags;
use tokio::io::unix::AsyncFd;

pub(crate) use clone::{spawn, spawn_monitored};
pub(crate) use holder::spawn_holder;
pub(crate) use monitor::MonitorProgram;

/// The lowest number a descriptor the node keeps for long is moved to ([`park`]).
pub(crate) const PARKED: i32 = 1024;

/// Moves `fd`, a descriptor the node keeps for long (a pidfd, a sandbox's namespace, a log
/// file: about ten per pod), to the lowest free number at or above [`PARKED`]; it stays where
/// it is when there is none (a limit on open files at or below that).
///
/// Below [`PARKED`] the node's table then holds its few base descriptors and the short-lived
/// ones, among them whatever a new process is given, so the clone that starts a container or
/// a sandbox, which shares the table, copies only the numbers below the highest it needs
/// (`clone::own_fds`). It used to copy the whole table, and its exec then closed every copy,
/// each close reading the file and its inode: a fifth of a container restart's CPU at 100
/// pods, growing with the pods.
pub(crate) fn park<F: From<OwnedFd> + Into<OwnedFd>>(fd: F) -> F {
    use std::os::fd::AsRawFd;
    let fd: OwnedFd = fd.into();
    // SAFETY: fcntl on a descriptor we own, with an integer argument; a new fd or -1.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PARKED) };
    if moved < 0 {
        return F::from(fd);
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it; the original
    // closes as `fd` drops.
    F::from(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// `/dev/null`, opened once for reading and writing, for the node's life: what a new process
/// (container, monitor, sandbox holder) gets for the standard streams it is not given; the
/// child makes its own copies. One open at each start less.
pub(crate) fn dev_null() -> io::Result<&'static OwnedFd> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd);
    }
    let fd = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    Ok(NULL.get_or_init(|| OwnedFd::from(fd)))
}

/// Opens `name` in the directory `dir` with `flags` (`O_RDONLY`, `O_WRONLY`, ...;
/// close-on-exec is added): one step of a path walk instead of the whole path (cgroupfs paths
/// are long, each step checked).
pub(crate) fn open_in(dir: &OwnedFd, name: &std::ffi::CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: openat reads a NUL-terminated name and returns a new fd or -1.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every descriptor of this process from `first` up close-on-exec (Linux 5.11; nothing
/// on an older kernel): what a container's main process does last before its exec, so it gets
/// its standard streams and nothing else, also of what the node inherited without the flag
/// (runc's `CloseExecFrom(3)`). Only a bitmap is written: cheap once the child's table is its
/// own small one.
pub(crate) fn close_on_exec_from(first: u32) {
    // SAFETY: close_range with integers only; it changes flags in this process's table.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    }
}

/// Opens a pidfd for `pid` (Linux 5.3+), [parked](park): the node holds its pidfds for as long
/// as the processes live.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(park(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A copy of descriptor `fd` of the process `pidfd` refers to (Linux 5.6+; the caller must be
/// allowed to ptrace it): how a restarted node takes back an adopted container's stdin or pty
/// master from its monitor.
pub(crate) fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags and returns a new fd
    // (close-on-exec) or -1; no memory is shared.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = i32::try_from(got).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(got) })
}

/// Registers `fd` with tokio's reactor (readiness of a pidfd).
pub(crate) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open, refers to the same file
    // description and is returned by every `as_raw_fd` for as long as it is registered.
    unsafe { AsyncFd::register(fd).map_err(io::Error::from) }
}

/// Sets glibc's mmap threshold to 128 KiB and caps its arenas at `arenas` (see
/// [`return_large_frees_to_the_system`](crate::process::return_large_frees_to_the_system)).
/// Returns whether the allocator took both (always false off glibc).
pub(crate) fn tune_allocator(arenas: i32) -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only sets one of the allocator's tuning parameters; it reads no
        // pointer and refuses (returns 0) a value it does not take.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) == 1
                && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = arenas;
        false
    }
}

/// glibc's `malloc_info` report (XML, one `<heap nr=...>` element per arena); `None` off glibc
/// or when it cannot be written.
pub(crate) fn allocator_report() -> Option<String> {
    #[cfg(target_env = "gnu")]
    {
        use std::io::{Read, Seek};
        use std::os::fd::FromRawFd;
        // SAFETY: tmpfile returns a valid FILE* or null (checked); malloc_info only writes to
        // it; the descriptor is duplicated (checked) before fclose, so the copy stays valid and
        // is owned by the File alone.
        let fd = unsafe {
            let file = libc::tmpfile();
            if file.is_null() {
                return None;
            }
            let written = libc::malloc_info(0, file) == 0 && libc::fflush(file) == 0;
            let fd = libc::dup(libc::fileno(file));
            libc::fclose(file);
            if !written || fd < 0 {
                if fd >= 0 {
                    libc::close(fd);
                }
                return None;
            }
            fd
        };
        // SAFETY: fd is a fresh duplicate owned by nothing else.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut report = String::new();
        f.rewind().ok()?;
        f.read_to_string(&mut report).ok()?;
        Some(report)
    }
    #[cfg(not(target_env = "gnu"))]
    {
        None
    }
}

/// Hands the allocator's free pages back to the system (`malloc_trim(0)`). Returns whether any
/// memory was released (always false off glibc).
pub(crate) fn trim_allocator() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes no pointer; it only releases pages the allocator holds free.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Unmaps the resident pages of this executable's read-only segments (its code, its read-only
/// data), which are mapped from the file and never written, with `madvise(MADV_DONTNEED)`: the
/// next access maps them again from the page cache. Writable segments (the data, and the RELRO
/// one whose relocated contents differ from the file's) are left alone, and so is an executable
/// with text relocations (its code pages were written at start-up). Returns the bytes of address
/// space released (0 when there was nothing to release, or the executable has no program
/// headers to read).
pub(crate) fn release_executable_pages() -> usize {
    /// The executable's read-only loaded segments, page-aligned inwards, collected by the
    /// callback from the first object `dl_iterate_phdr` reports (the executable itself).
    struct Found {
        page: usize,
        ranges: Vec<(usize, usize)>,
        text_relocations: bool,
    }
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        const DT_NULL: u64 = 0;
        const DT_TEXTREL: u64 = 22;
        const DT_FLAGS: u64 = 30;
        const DF_TEXTREL: u64 = 0x4;
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and `data`
        // is the `Found` that `release_executable_pages` lent it (not otherwise borrowed then).
        let (info, found) = unsafe { (&*info, &mut *data.cast::<Found>()) };
        let page = found.page;
        let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: dlpi_phdr points at dlpi_phnum program headers of the loaded object.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let base = info.dlpi_addr as usize;
        for h in headers {
            if h.p_type == libc::PT_DYNAMIC {
                let mut entry = (base + h.p_vaddr as usize) as *const [u64; 2];
                // SAFETY: the dynamic segment is loaded and ends with a DT_NULL entry; each
                // entry is a tag and a value of 8 bytes each on a 64-bit target.
                unsafe {
                    while (*entry)[0] != DT_NULL {
                        let [tag, value] = *entry;
                        if tag == DT_TEXTREL || (tag == DT_FLAGS && value & DF_TEXTREL != 0) {
                            found.text_relocations = true;
                        }
                        entry = entry.add(1);
                    }
                }
            }
            if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0 {
                let start = (base + h.p_vaddr as usize).next_multiple_of(page);
                let end = (base + (h.p_vaddr + h.p_memsz) as usize) / page * page;
                if end > start {
                    found.ranges.push((start, end));
                }
            }
        }
        1 // the first object is the executable: stop there
    }
    let mut found = Found {
        page: usize::try_from(crate::usage::page_size()).unwrap_or(4096),
        ranges: Vec::new(),
        text_relocations: false,
    };
    // SAFETY: the callback only reads the program headers and dynamic entries the loader hands
    // it and writes to `found`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(first_object), (&raw mut found).cast());
    }
    if found.text_relocations {
        return 0;
    }
    let mut released = 0;
    for (start, end) in found.ranges {
        // SAFETY: the range lies within a read-only segment of the executable, mapped privately
        // from its file and never written (no text relocations): dropping its pages loses no
        // data, the next access maps them from the file again.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
            released += end - start;
        }
    }
    released
}

/// Makes `cmd`'s child leave into new network, UTS, IPC and mount namespaces before it execs,
/// its mounts made private as a sandbox holder's are: what a pod of one container costs at
/// minimum, for measurements such as the benchmarks' floors. A container needs a mount
/// namespace of its own for the files it sees where the host has none (its termination-message
/// file, the pod's hosts file); the kernel tears that namespace down with it. Spawning fails
/// with the system call's error where namespaces cannot be created (without root).
pub fn with_new_pod_namespaces(cmd: &mut std::process::Command) -> &mut std::process::Command {
    // SAFETY: the hook runs between fork and exec and makes two system calls, unshare(2) and
    // mount(2), which are async-signal-safe, allocate nothing and touch no memory of the
    // parent (the path is a static C string).
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(
                CloneFlags::CLONE_NEWNET
                    | CloneFlags::CLONE_NEWUTS
                    | CloneFlags::CLONE_NEWIPC
                    | CloneFlags::CLONE_NEWNS,
            )?;
            let none = None::<&std::ffi::CStr>;
            let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
            nix::mount::mount(none, c"/", none, private, none)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    /// A floor's process is in network, UTS, IPC and mount namespaces of its own, and none of
    /// its mounts propagates to or from the host's.
    #[test]
    #[ignore = "needs root"]
    fn a_child_with_new_pod_namespaces_has_its_own_namespaces_and_private_mounts() {
        let _children = crate::TEST_CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("60");
        let mut child = super::with_new_pod_namespaces(&mut cmd).spawn().unwrap();
        let pid = child.id();
        let ns = |of: &str, kind: &str| fs::read_link(format!("/proc/{of}/ns/{kind}")).unwrap();
        let own: Vec<bool> = ["net", "uts", "ipc", "mnt"]
            .into_iter()
            .map(|kind| ns(&pid.to_string(), kind) != ns("self", kind))
            .collect();
        let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(own, [true; 4]);
        assert!(mounts.lines().count() > 1, "{mounts}");
        assert!(
            !mounts.contains("shared:") && !mounts.contains("master:"),
            "{mounts}"
        );
    }
}
