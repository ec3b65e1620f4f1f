//! Container logs: CRI-format files, rotated by size.
//!
//! The format's writing side is [`cri`] (records, the line splitter, rotation), shared with the
//! container monitor that writes a monitored container's log; `pump` is the node's own
//! writer, for containers started without a monitor. [`read`] gives the files back as lines
//! ([`CriLogReader`], the runtime's `LogSource`). This is the one crate that knows the format.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;

pub mod cri;
pub mod read;
pub use cri::MAX_LINE;
pub use read::CriLogReader;

/// The node's log files: [`cri::RotatingFile`] through `std`.
pub(crate) enum StdFs {}

/// A rotating log file written by the node.
pub(crate) type RotatingFile = cri::RotatingFile<StdFs>;

impl cri::LogFs for StdFs {
    type File = File;
    type Error = io::Error;

    fn create(path: &[u8]) -> io::Result<File> {
        let path = Path::new(OsStr::from_bytes(path));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(cri::LOG_MODE)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(cri::LOG_MODE))?;
        // Held while the instance runs.
        Ok(crate::sys::park(file))
    }

    fn append(path: &[u8]) -> io::Result<(File, u64)> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(cri::LOG_MODE)
            .open(Path::new(OsStr::from_bytes(path)))?;
        let size = file.metadata()?.len();
        Ok((crate::sys::park(file), size))
    }

    fn write_all(file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn remove(path: &[u8]) -> io::Result<()> {
        std::fs::remove_file(Path::new(OsStr::from_bytes(path))).or_else(ignore_missing)
    }

    fn rename(from: &[u8], to: &[u8], missing_ok: bool) -> io::Result<()> {
        let renamed = std::fs::rename(
            Path::new(OsStr::from_bytes(from)),
            Path::new(OsStr::from_bytes(to)),
        );
        if missing_ok {
            renamed.or_else(ignore_missing)
        } else {
            renamed
        }
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// The time since the epoch (what [`cri::encode`] stamps records with).
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

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

/// A size-rotated CRI log file shared by a container's stdout and stderr readers in the node
/// (where no monitor writes it), with notifications for followers.
pub(crate) struct LogFile {
    file: RotatingFile,
    /// Notified after every record written (followers read the file on each change); dropped
    /// with the file, once both streams ended.
    updates: tokio::sync::watch::Sender<()>,
    /// Woken when a follower subscribes (a monitor's log is only watched while followed).
    interest: Arc<tokio::sync::Notify>,
}

impl LogFile {
    /// Creates (truncates) the log file of one instance, in a directory that exists.
    pub(crate) fn create(path: PathBuf, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        Ok(LogFile {
            file: RotatingFile::create(path.into_os_string().into_vec(), max_bytes, max_files)?,
            updates: tokio::sync::watch::Sender::new(()),
            interest: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// An instance's existing log, written by its monitor (an adopted instance's): opened,
    /// never truncated.
    pub(crate) fn existing(path: PathBuf, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        Ok(LogFile {
            file: RotatingFile::append(path.into_os_string().into_vec(), max_bytes, max_files)?,
            updates: tokio::sync::watch::Sender::new(()),
            interest: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// A receiver notified after each record written to this file.
    pub(crate) fn updates(&self) -> tokio::sync::watch::Receiver<()> {
        let rx = self.updates.subscribe();
        self.interest.notify_one();
        rx
    }

    /// What wakes the watcher of a monitor-written log when someone starts to follow it.
    pub(crate) fn interest(&self) -> Arc<tokio::sync::Notify> {
        self.interest.clone()
    }

    /// Whether anyone follows the file's updates.
    pub(crate) fn followers(&self) -> bool {
        self.updates.receiver_count() > 0
    }

    /// Tells the followers the file changed (when a monitor, not this, writes it).
    pub(crate) fn notify(&self) {
        self.updates.send_modify(|()| {});
    }

    /// Writes one record. Errors are reported once by the caller and never block the reader.
    pub(crate) fn record(&mut self, stream: Stream, partial: bool, text: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 48);
        cri::encode(
            &mut line,
            since_epoch(SystemTime::now()),
            stream.as_str(),
            partial,
            text,
        );
        self.file.write(&line)?;
        self.updates.send_modify(|()| {});
        Ok(())
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
    let mut splitter = cri::Splitter::default();
    let mut reported = false;
    let mut emit = |partial: bool, text: &[u8]| {
        let result = match log.lock() {
            Ok(mut log) => log.record(stream, partial, text),
            Err(_) => Ok(()),
        };
        if let Err(e) = result
            && !reported
        {
            reported = true;
            tracing::warn!(error = %e, "container log write failed; further output is dropped");
        }
    };
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tap.send(&buf[..n]);
        splitter.feed(&buf[..n], &mut emit);
    }
    splitter.finish(&mut emit);
    tap.end();
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
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(current.len() <= 1024);
        assert!(current.contains(" stdout F line 199\n"));
    }

    #[test]
    fn a_batch_of_records_larger_than_the_file_is_split_between_files_at_records() {
        // What the monitor writes after one read of a full pipe: many records at once.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("0.log");
        let mut file = RotatingFile::create(path.clone().into_os_string().into_vec(), 1024, 5)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut batch = Vec::new();
        for i in 0..60 {
            cri::encode(
                &mut batch,
                Duration::ZERO,
                "stdout",
                false,
                format!("line {i}").as_bytes(),
            );
        }
        assert!(batch.len() > 2 * 1024, "the batch spans files");
        file.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        let mut all = String::new();
        for name in ["0.log.2", "0.log.1", "0.log"] {
            let text =
                std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(text.len() <= 1024, "{name} holds {} bytes", text.len());
            assert!(
                text.ends_with('\n') && text.lines().all(|l| l.contains(" stdout F line ")),
                "{name}: whole records"
            );
            all.push_str(&text);
        }
        assert_eq!(all.as_bytes(), batch.as_slice(), "every record, in order, once");
        // A record larger than a file gets one of its own.
        let mut big = Vec::new();
        cri::encode(
            &mut big,
            Duration::ZERO,
            "stdout",
            false,
            "x".repeat(2000).as_bytes(),
        );
        file.write(&big).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).unwrap_or_default(), big);
    }

    #[test]
    fn record_timestamps_are_the_apis_nanosecond_times() {
        for secs in [0u64, 951_782_400, 1_709_251_199, 4_102_444_800, 253_402_300_799] {
            for nanos in [0u32, 1, 999_999_999] {
                let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
                let mut record = Vec::new();
                cri::encode(&mut record, since_epoch(t), "stdout", false, b"x");
                let stamp = record.split(|b| *b == b' ').next().unwrap_or_default();
                assert_eq!(
                    String::from_utf8_lossy(stamp),
                    podvisor_core::rfc3339::nanos(t),
                    "{secs}.{nanos}"
                );
            }
        }
    }

    #[test]
    fn the_splitter_cuts_long_lines_and_keeps_an_unfinished_one() {
        let mut got = Vec::new();
        let mut emit = |partial: bool, text: &[u8]| got.push((partial, text.len()));
        let mut s = cri::Splitter::default();
        s.feed(b"a\nbc", &mut emit);
        s.feed(&vec![b'x'; MAX_LINE + 5], &mut emit);
        s.feed(b"\n", &mut emit);
        s.feed(b"tail", &mut emit);
        s.finish(&mut emit);
        assert_eq!(got, [(false, 1), (true, MAX_LINE), (false, 7), (true, 4)]);
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
