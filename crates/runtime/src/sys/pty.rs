//! Pseudo-terminals: a master/slave pair opened close-on-exec, the controlling terminal of a
//! new session, and the window size. The ioctls are the only `unsafe` here.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// A new pty: `(master, slave)`, both close-on-exec and neither the caller's controlling
/// terminal. `/dev/ptmx` and `/dev/pts/<n>` are looked up in the calling thread's mount
/// namespace (an exec helper thread opens the container's).
pub(crate) fn open() -> io::Result<(OwnedFd, OwnedFd)> {
    // std opens with O_CLOEXEC: no child spawned meanwhile by another thread inherits it.
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which points to a live local.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer, to a live local.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(format!("/dev/pts/{number}"))?;
    Ok((OwnedFd::from(master), OwnedFd::from(slave)))
}

/// Makes the terminal on standard input the controlling terminal of the calling process, which
/// must lead a session without one (just after `setsid`). Async-signal-safe: one system call,
/// for a child between fork and exec.
pub(crate) fn stdin_becomes_controlling_terminal() -> io::Result<()> {
    // SAFETY: TIOCSCTTY on fd 0 takes an integer argument (0: do not steal the terminal from
    // another session); no memory is passed, and a bad fd is an error return.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets terminal `fd`'s window size (the session's foreground group gets SIGWINCH).
pub(crate) fn set_window_size(fd: BorrowedFd<'_>, columns: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` through the pointer, a live local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_pty_passes_bytes_and_takes_a_window_size() {
        let (master, slave) = open().unwrap_or_else(|e| panic!("{e}"));
        set_window_size(master.as_fd(), 120, 40).unwrap_or_else(|e| panic!("{e}"));
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `struct winsize` to a live local.
        let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!(r, 0);
        assert_eq!((size.ws_col, size.ws_row), (120, 40));
        nix::unistd::write(&slave, b"hi\n").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(master.as_raw_fd(), &mut buf).unwrap_or_else(|e| panic!("{e}"));
        // The line discipline turns `\n` into `\r\n`.
        assert_eq!(&buf[..n], b"hi\r\n");
        let flags = nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "close-on-exec");
    }
}
