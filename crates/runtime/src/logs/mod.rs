//! Container logs: pipes read continuously into CRI-format files, rotated by size.
//!
//! Each line is `<RFC 3339 nano UTC timestamp> <stdout|stderr> <F|P> <text>`; a line longer than
//! [`MAX_LINE`] is split into `P` (partial) records followed by a final `F` record, as
//! containerd does. The current file is `<restart>.log`; rotated ones are `<restart>.log.1`
//! (newest) up to `<restart>.log.<max_files - 1>`. This is the one crate that knows the format:
//! [`read`] gives the files back as lines ([`CriLogReader`], the runtime's `LogSource`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::AsyncReadExt;

pub mod read;
pub use read::CriLogReader;

/// The longest line written as one record; longer ones are split into partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A size-rotated CRI log file shared by a container's stdout and stderr readers.
pub(crate) struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
    /// Notified after every record written (followers read the file on each change); dropped
    /// with the file, once both streams ended.
    updates: tokio::sync::watch::Sender<()>,
}

impl LogFile {
    /// Creates (truncates) the log file of one instance.
    pub(crate) fn create(path: PathBuf, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = create_private(&path)?;
        Ok(LogFile {
            path,
            file: Some(file),
            size: 0,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
            updates: tokio::sync::watch::Sender::new(()),
        })
    }

    /// A receiver notified after each record written to this file.
    pub(crate) fn updates(&self) -> tokio::sync::watch::Receiver<()> {
        self.updates.subscribe()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files <= 1 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            let last = self.max_files - 1;
            fs::remove_file(name(last)).or_else(ignore_missing)?;
            for n in (1..last).rev() {
                fs::rename(name(n), name(n + 1)).or_else(ignore_missing)?;
            }
            fs::rename(&self.path, name(1))?;
        }
        self.file = Some(create_private(&self.path)?);
        self.size = 0;
        Ok(())
    }

    /// Writes one record. Errors are reported once by the caller and never block the reader.
    pub(crate) fn record(&mut self, stream: Stream, partial: bool, text: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 48);
        line.extend_from_slice(timestamp(SystemTime::now()).as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_str().as_bytes());
        line.extend_from_slice(if partial { b" P " } else { b" F " });
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(LOG_MODE)
                    .open(&self.path)?,
            ),
        };
        file.write_all(&line)?;
        self.size += line.len() as u64;
        self.updates.send_modify(|()| {});
        Ok(())
    }
}

/// Log files are readable by the node's user and group only: container output can hold
/// secrets, as with the kubelet's `/var/log/pods`.
pub(crate) const LOG_MODE: u32 = 0o640;

/// Creates (truncates) `path` with [`LOG_MODE`], also when it existed with another mode.
fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(LOG_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(LOG_MODE))?;
    Ok(file)
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Reads `pipe` (a pipe, or a pty master for a `tty` container) until EOF into `log`, splitting
/// lines, and copies what it reads to the attached clients (`tap`), which never hold it up.
/// Never stops reading because of a write error, so the container never blocks on a full pipe.
pub(crate) async fn pump(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    log: Arc<Mutex<LogFile>>,
    tap: &crate::stdio::Fanout,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut reported = false;
    let mut emit = |pending: &mut Vec<u8>, partial: bool, upto: usize, skip: usize| {
        let result = match log.lock() {
            Ok(mut log) => log.record(stream, partial, &pending[..upto]),
            Err(_) => Ok(()),
        };
        if let Err(e) = result
            && !reported
        {
            reported = true;
            tracing::warn!(error = %e, "container log write failed; further output is dropped");
        }
        pending.drain(..upto + skip);
    };
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tap.send(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        loop {
            if let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                if pos > MAX_LINE {
                    emit(&mut pending, true, MAX_LINE, 0);
                } else {
                    emit(&mut pending, false, pos, 1);
                }
            } else if pending.len() > MAX_LINE {
                emit(&mut pending, true, MAX_LINE, 0);
            } else {
                break;
            }
        }
    }
    if !pending.is_empty() {
        // Output that ends without a newline is a partial line, as containerd records it: the
        // readers give it back without a newline (`printf DONE` logs `DONE`).
        let len = pending.len();
        emit(&mut pending, true, len, 0);
    }
    tap.end();
}

/// Formats a time as RFC 3339 with nanoseconds in UTC (`2006-01-02T15:04:05.999999999Z`).
pub(crate) fn timestamp(t: SystemTime) -> String {
    podvisor_core::rfc3339::nanos(t)
}

/// The termination message fallback: the text of the last `max_lines` records of the log (at
/// most `max_bytes`, keeping the end), partial records joined as the container wrote them.
pub(crate) fn tail(path: &Path, max_lines: usize, max_bytes: usize) -> String {
    let mut text = Vec::new();
    // Read the end of the current file; 64 KiB of records covers 2048 bytes of payload or more.
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(64 * 1024);
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let _ = f.read_to_end(&mut text);
        }
        if start > 0 {
            // Drop the first, probably cut, record.
            let cut = text
                .iter()
                .position(|b| *b == b'\n')
                .map_or(text.len(), |p| p + 1);
            text.drain(..cut);
        }
    }
    let mut joiner = read::Joiner::default();
    let mut lines = joiner.feed(&text);
    lines.extend(joiner.partial.take());
    let out: String = lines.iter().map(|l| l.render(false)).collect();
    let lines: Vec<&str> = out.split_inclusive('\n').collect();
    let mut kept: String = lines[lines.len().saturating_sub(max_lines)..].concat();
    if kept.len() > max_bytes {
        let mut cut = kept.len() - max_bytes;
        while !kept.is_char_boundary(cut) {
            cut += 1;
        }
        kept.drain(..cut);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("0.log");
        let mut log = LogFile::create(path.clone(), 1024, 3).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..200 {
            log.record(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(path.exists());
        assert!(dir.path().join("0.log.1").exists());
        assert!(dir.path().join("0.log.2").exists());
        assert!(!dir.path().join("0.log.3").exists());
        let current = fs::read_to_string(&path).unwrap_or_default();
        assert!(current.len() <= 1024);
        assert!(current.contains(" stdout F line 199\n"));
    }

    #[test]
    fn tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("0.log");
        let mut log = LogFile::create(path.clone(), 1 << 20, 2).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..100 {
            log.record(Stream::Stderr, false, format!("l{i}").as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        log.record(Stream::Stdout, true, b"part")
            .unwrap_or_else(|e| panic!("{e}"));
        log.record(Stream::Stdout, false, b"ial")
            .unwrap_or_else(|e| panic!("{e}"));
        let t = tail(&path, 80, 2048);
        assert_eq!(t.lines().count(), 80);
        assert!(t.ends_with("l99\npartial\n"));
        assert_eq!(tail(&path, 80, 8), "partial\n");
    }
}
