//! The container monitor's executable in memory ([`MonitorProgram`]): `build.rs` compiles
//! `program.rs` (the monitor itself, a program of its own) and the runtime carries its bytes;
//! at start they go into a sealed memfd, which every monitor is executed from. Starting a main
//! process under its monitor is `clone::spawn_monitored`.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The monitor's executable, as `build.rs` made it.
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/podvisor-monitor"));

/// The monitor's executable in a sealed, read-only memfd.
#[derive(Debug)]
pub(crate) struct MonitorProgram {
    fd: OwnedFd,
}

impl MonitorProgram {
    /// Writes the executable into a new memfd, seals it and keeps a read-only descriptor of it
    /// (a descriptor open for writing would make exec fail with `ETXTBSY`).
    pub(crate) fn load() -> io::Result<MonitorProgram> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags, returns a new fd or -1.
        let raw = unsafe {
            libc::memfd_create(
                c"podvisor-monitor".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd and nothing else owns it.
        let writable = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut file = std::fs::File::from(writable);
        file.write_all(PROGRAM)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our own fd with an integer argument.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let read_only = std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        Ok(MonitorProgram {
            fd: OwnedFd::from(read_only),
        })
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::PROGRAM;

    /// The program headers' types of the ELF64 executable `elf`.
    fn segment_types(elf: &[u8]) -> Vec<u32> {
        let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]);
        let at = |o: usize| usize::try_from(u64::from_le_bytes(elf[o..o + 8].try_into().unwrap_or([0; 8])));
        let phoff = at(0x20).unwrap_or(0);
        let (size, count) = (usize::from(u16_at(0x36)), usize::from(u16_at(0x38)));
        (0..count)
            .map(|i| {
                let o = phoff + i * size;
                u32::from_le_bytes(elf[o..o + 4].try_into().unwrap_or([0; 4]))
            })
            .collect()
    }

    #[test]
    fn the_monitor_is_a_small_static_program_with_nothing_to_load_or_relocate() {
        assert_eq!(&PROGRAM[..4], b"\x7fELF");
        let types = segment_types(PROGRAM);
        assert!(types.contains(&1), "a loadable segment: {types:?}");
        // PT_INTERP (a dynamic loader) and PT_DYNAMIC (libraries, relocations): each would
        // cost every container start and sandbox their work.
        assert!(!types.contains(&3) && !types.contains(&2), "{types:?}");
        assert!(PROGRAM.len() < 128 * 1024, "{} bytes", PROGRAM.len());
    }
}
