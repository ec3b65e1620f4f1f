//! The writing side of the CRI log format, with nothing but `std`: the record encoding, the
//! line splitter and the size-rotated file. Two programs compile this one file: the runtime
//! (as `logs::cri`) and the container monitor (`sys/monitor/program.rs`, which includes it by
//! path), so the format has one home however the bytes reach the disk.
//!
//! A record is `<RFC 3339 nano UTC timestamp> <stdout|stderr> <F|P> <text>\n`; a line longer
//! than [`MAX_LINE`] becomes `P` (partial) records and a final `F` record, as containerd writes
//! them. The current file is `<restart>.log`, rotated ones `<restart>.log.1` (newest) up to
//! `<restart>.log.<max_files - 1>`. Reading the files back is `logs::read`, in the runtime only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest line written as one record; longer ones are split into partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// Log files are readable by the node's user and group only: container output can hold
/// secrets, as with the kubelet's `/var/log/pods`.
pub const LOG_MODE: u32 = 0o640;

/// `t` as RFC 3339 in UTC with nine fraction digits (`2006-01-02T15:04:05.000000000Z`).
pub fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

/// Appends one record to `out`.
pub fn encode(out: &mut Vec<u8>, at: SystemTime, stream: &str, partial: bool, text: &[u8]) {
    out.extend_from_slice(timestamp(at).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// Cuts one stream's bytes into records: each line (without its newline) is a full record, a
/// line longer than [`MAX_LINE`] is cut into partial ones, and what is left at the end of the
/// stream is a partial record (`printf DONE` logs `DONE`, read back without a newline).
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    /// Feeds bytes read from the stream; `emit(partial, text)` gets each complete record.
    pub fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(bool, &[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(pos) if pos <= MAX_LINE => {
                    emit(false, &rest[..pos]);
                    start += pos + 1;
                }
                _ if rest.len() > MAX_LINE => {
                    emit(true, &rest[..MAX_LINE]);
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
    }

    /// The stream ended: what is pending becomes a partial record.
    pub fn finish(&mut self, emit: &mut dyn FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            emit(true, &self.pending);
            self.pending.clear();
        }
    }
}

/// A container instance's log file, rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl RotatingFile {
    /// Creates (truncates) the file, mode [`LOG_MODE`].
    pub fn create(path: PathBuf, max_bytes: u64, max_files: u32) -> io::Result<RotatingFile> {
        let file = create_private(&path)?;
        Ok(RotatingFile {
            path,
            file: Some(file),
            size: 0,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
        })
    }

    /// Opens the file to append to it (created by whoever started the instance).
    pub fn append(path: PathBuf, max_bytes: u64, max_files: u32) -> io::Result<RotatingFile> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(LOG_MODE)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file: Some(file),
            size,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
        })
    }

    /// Writes records (whole ones: `bytes` is what [`encode`] appended, one or many), rotating
    /// before a record that would take the file past its size, so a file holds at most its
    /// size of whole records (a single record larger than that gets a file of its own). A
    /// batch of many records, as one read of a full pipe gives, is split between files.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = usize::try_from(self.max_bytes.saturating_sub(self.size)).unwrap_or(usize::MAX);
            let take = if bytes.len() <= room {
                bytes.len()
            } else {
                // The whole records that fit; into an empty file, at least the first record.
                let fits = bytes[..room].iter().rposition(|b| *b == b'\n').map(|i| i + 1);
                match fits {
                    Some(n) => n,
                    None if self.size == 0 => bytes
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(bytes.len(), |i| i + 1),
                    None => 0,
                }
            };
            if take > 0 {
                self.append_bytes(&bytes[..take])?;
                bytes = &bytes[take..];
            }
            if !bytes.is_empty() {
                self.rotate()?;
            }
        }
        Ok(())
    }

    fn append_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
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
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
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
}

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
